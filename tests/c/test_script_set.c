/* test_script_set.c: unit tests for host/script_set.c: what a generation's bytes are (every .lua
 * file below the scripts directory, sorted, hidden files skipped), that its id depends only on
 * paths and contents, and that every limit ends in an error naming the cause. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lh.h"
#include "lh_test.h"
#include "script_set.h"

static void put(const char *root, const char *rel, const char *text) {
  lh_test_write_file(root, rel, text);
}

static void make_tree(char *root, size_t len) {
  snprintf(root, len, "/tmp/lh_test_scripts_XXXXXX");
  LH_CHECK(mkdtemp(root) != NULL);
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s/routes", root);
  mkdir(dir, 0700);
  put(root, "routes/b.lua", "return {}\n");
  put(root, "a.lua", "return { x = 1 }\n");
  put(root, ".hidden.lua", "error('never read')\n");
  put(root, "routes/.b.lua.swp", "editor junk\n");
  put(root, "notes.txt", "not a script\n");
}

static void remove_tree(const char *root) {
  char cmd[4200];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  LH_CHECK_INT(system(cmd), 0);
}

static void test_reads_lua_files_sorted_and_hashes_contents(void) {
  char root[64], err[256];
  make_tree(root, sizeof(root));
  lh_script_set_t s = {0};
  LH_CHECK_INT(lh_script_set_read(&s, root, err, sizeof(err)), 0);
  LH_CHECK_INT(s.n, 2);
  LH_CHECK_STR(s.files[0].path, "a.lua");
  LH_CHECK_STR(s.files[1].path, "routes/b.lua");
  LH_CHECK_INT(strlen(s.generation), 16);
  char first[17];
  memcpy(first, s.generation, sizeof(first));
  lh_script_set_free(&s);

  /* The same contents in another directory: the same id (two hosts agree). */
  char other[64];
  make_tree(other, sizeof(other));
  lh_script_set_t t = {0};
  LH_CHECK_INT(lh_script_set_read(&t, other, err, sizeof(err)), 0);
  LH_CHECK_STR(t.generation, first);
  lh_script_set_free(&t);
  /* One byte changed: another id. */
  put(other, "a.lua", "return { x = 2 }\n");
  LH_CHECK_INT(lh_script_set_read(&t, other, err, sizeof(err)), 0);
  LH_CHECK(strcmp(t.generation, first) != 0);
  lh_script_set_free(&t);
  remove_tree(root);
  remove_tree(other);
}

static void test_missing_directory_and_long_paths_are_errors(void) {
  char err[256];
  lh_script_set_t s = {0};
  LH_CHECK(lh_script_set_read(&s, "/nonexistent/scripts", err, sizeof(err)) < 0);
  LH_CHECK(strstr(err, "/nonexistent/scripts") != NULL);

  /* Nested directories whose relative path passes what the reader can name: an error, never a
   * truncated path that would read another file. */
  char root[64];
  make_tree(root, sizeof(root));
  char dir[4096], name[201];
  memset(name, 'd', 200);
  name[200] = '\0';
  snprintf(dir, sizeof(dir), "%s", root);
  for (int i = 0; i < 6; i++) {
    size_t n = strlen(dir);
    snprintf(dir + n, sizeof(dir) - n, "/%s", name);
    LH_CHECK_INT(mkdir(dir, 0700), 0);
  }
  int rc = lh_script_set_read(&s, root, err, sizeof(err));
  LH_CHECK_INT(rc, LH_ELIMIT);
  LH_CHECK(strstr(err, "too long") != NULL);
  remove_tree(root);
}

int main(void) {
  LH_RUN(test_reads_lua_files_sorted_and_hashes_contents);
  LH_RUN(test_missing_directory_and_long_paths_are_errors);
  return lh_test_done();
}
