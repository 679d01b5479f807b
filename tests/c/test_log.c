/* test_log.c: unit tests for host/log.c and host/timefmt.c: every log line is one valid JSON
 * object whatever the message holds (invalid UTF-8, quotes, control characters: the JSON string
 * writer of host/buf.c over every byte, truncated sequences, overlongs, surrogates), warnings and
 * errors carry their file and line, lines go to the configured files and follow them across a
 * rename and reopen (also while other threads write), and the one time formatter's two styles. */
#include "lh.h"
#include "lh_test.h"
#include "log.h"
#include "timefmt.h"

#include "buf.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Runs lh_log with msg as its argument and returns the line written to stderr (static). */
static const char *log_line(const char *msg) {
  static char line[8192];
  char path[] = "/tmp/lh_test_log_XXXXXX";
  int fd = mkstemp(path);
  LH_CHECK(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  lh_log(LH_LOG_WARN, "got %s", msg);
  dup2(saved, STDERR_FILENO);
  close(saved);
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, line, sizeof line - 1);
  close(fd);
  unlink(path);
  line[n > 0 ? n : 0] = '\0';
  return line;
}

static void test_line_is_json_whatever_the_message(void) {
  static const char *const msgs[] = {
      "plain", "quote \" backslash \\ newline \n tab \t bell \a", "invalid \xff\xfe UTF-8 \xc3",
      "overlong \xc0\xaf and surrogate \xed\xa0\x80", "caf\xc3\xa9 \xe2\x80\xa8 separator"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(msgs); i++) {
    const char *line = log_line(msgs[i]);
    size_t len = strlen(line);
    LH_CHECK(len > 0 && line[len - 1] == '\n');
    LH_CHECK(memchr(line, '\n', len) == line + len - 1); /* one line */
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    LH_CHECK(obj != NULL);
    if (!obj) {
      fprintf(stderr, "  not JSON: %s (%s)\n", line, jerr.text);
      continue;
    }
    LH_CHECK_STR(json_string_value(json_object_get(obj, "level")), "warn");
    const char *m = json_string_value(json_object_get(obj, "msg"));
    LH_CHECK(m != NULL && strncmp(m, "got ", 4) == 0);
    json_decref(obj);
  }
  /* Invalid bytes become U+FFFD, valid text is kept. */
  LH_CHECK(strstr(log_line("a\xff"
                           "b"),
                  "a\xef\xbf\xbd"
                  "b") != NULL);
  LH_CHECK(strstr(log_line("caf\xc3\xa9"), "caf\xc3\xa9") != NULL);
}

/* s[0..n) as a JSON string literal, parsed back by jansson (which rejects invalid UTF-8 and raw
 * control characters): the decoded text, or NULL when the output is not valid JSON. */
static json_t *escaped(const char *s, size_t n) {
  lh_buf_t b;
  lh_buf_init(&b);
  LH_CHECK_INT(lh_buf_put_json_string(&b, s, n), 0);
  json_error_t jerr;
  json_t *v = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!v)
    fprintf(stderr, "  not JSON for %zu bytes: %s (%s)\n", n, b.data, jerr.text);
  lh_buf_free(&b);
  return v;
}

/* The escaped and decoded form of s equals expect (expect_len bytes). */
static int escapes_to(const char *s, size_t n, const char *expect, size_t expect_len) {
  json_t *v = escaped(s, n);
  int ok = v && json_is_string(v) && json_string_length(v) == expect_len &&
           memcmp(json_string_value(v), expect, expect_len) == 0;
  json_decref(v);
  return ok;
}
#define ESCAPES_TO(in, out) escapes_to(in, sizeof(in) - 1, out, sizeof(out) - 1)

static void test_every_byte_gives_valid_json(void) {
  /* Each byte alone: ASCII comes back as itself, every byte from 0x80 is not UTF-8 alone and
   * comes back as U+FFFD. */
  for (int c = 0; c < 256; c++) {
    char in = (char)c;
    if (c < 0x80)
      LH_CHECK(escapes_to(&in, 1, &in, 1));
    else
      LH_CHECK(escapes_to(&in, 1, "\xef\xbf\xbd", 3));
  }
  /* Every pair of bytes, and every pair between text and a quote: always one valid string. */
  int bad = 0;
  for (int a = 0; a < 256; a++) {
    for (int c = 0; c < 256; c++) {
      char in[6] = {'x', (char)a, (char)c, '"', (char)a, '\\'};
      json_t *v = escaped(in, sizeof in);
      bad += !v || !json_is_string(v);
      json_decref(v);
    }
  }
  LH_CHECK_INT(bad, 0);
}

static void test_invalid_utf8_becomes_replacement_characters(void) {
  /* Truncated sequences: each byte of the unfinished sequence is one U+FFFD. */
  LH_CHECK(ESCAPES_TO("a\xc3", "a\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("a\xe2\x82", "a\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xf0\x9f\x98z", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz"));
  /* Overlong forms of '/' and NUL, a surrogate half, beyond U+10FFFF, a lone continuation. */
  LH_CHECK(ESCAPES_TO("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xed\xbf\xbf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
  LH_CHECK(ESCAPES_TO("\x80", "\xef\xbf\xbd"));
  /* Valid text around them is kept: 2-, 3- and 4-byte sequences, the highest code point. */
  LH_CHECK(ESCAPES_TO("caf\xc3\xa9\xff\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf",
                      "caf\xc3\xa9\xef\xbf\xbd\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  /* Control characters and NUL are escaped, never raw. */
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_put_json_string(&b, "\x00\x01\x1f\x7f\n", 5);
  LH_CHECK_STR(b.data, "\"\\u0000\\u0001\\u001f\x7f\\n\"");
  lh_buf_free(&b);
}

/* The JSON object of line (one line, newline included), or NULL. */
static json_t *parse_line(const char *line) {
  size_t len = strlen(line);
  if (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len) != line + len - 1)
    return NULL;
  return json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
}

/* Runs fn with stderr sent to a temporary file and returns what was written (static). */
static const char *captured(void (*fn)(void)) {
  static char out[8192];
  char path[] = "/tmp/lh_test_log_XXXXXX";
  int fd = mkstemp(path);
  LH_CHECK(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  fn();
  dup2(saved, STDERR_FILENO);
  close(saved);
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, out, sizeof out - 1);
  close(fd);
  unlink(path);
  out[n > 0 ? n : 0] = '\0';
  return out;
}

static int g_error_line;
static void log_an_error(void) {
  g_error_line = __LINE__ + 1;
  lh_error("disk %s", "full");
}
static void log_from_a_script(void) {
  lh_log_at(LH_LOG_WARN, "scripts/routes/a.lua", 12, "careful");
}

static void test_errors_carry_file_and_line(void) {
  json_t *o = parse_line(captured(log_an_error));
  LH_CHECK(o != NULL);
  if (o) {
    LH_CHECK_STR(json_string_value(json_object_get(o, "level")), "error");
    LH_CHECK_STR(json_string_value(json_object_get(o, "msg")), "disk full");
    /* __FILE__ is absolute in the build: the line names its last two components. */
    const char *file = json_string_value(json_object_get(o, "file"));
    LH_CHECK(file && (strcmp(file, "c/test_log.c") == 0 || strcmp(file, __FILE__) == 0));
    LH_CHECK_INT(json_integer_value(json_object_get(o, "line")), g_error_line);
  }
  json_decref(o);
  o = parse_line(captured(log_from_a_script));
  LH_CHECK(o != NULL);
  if (o) {
    LH_CHECK_STR(json_string_value(json_object_get(o, "file")), "scripts/routes/a.lua");
    LH_CHECK_INT(json_integer_value(json_object_get(o, "line")), 12);
  }
  json_decref(o);
}

/* The whole content of path, or "" when it does not exist (static). */
static const char *slurp(const char *path) {
  static char out[1 << 20];
  out[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f)
    return out;
  size_t n = fread(out, 1, sizeof out - 1, f);
  fclose(f);
  out[n] = '\0';
  return out;
}

static void test_files_and_reopen_after_rename(void) {
  char dir[] = "/tmp/lh_test_logdir_XXXXXX";
  LH_CHECK(mkdtemp(dir) != NULL);
  char access[256], error[256], access_old[256], error_old[256], err[1300];
  snprintf(access, sizeof access, "%s/access.log", dir);
  snprintf(error, sizeof error, "%s/error.log", dir);
  snprintf(access_old, sizeof access_old, "%s/access.log.1", dir);
  snprintf(error_old, sizeof error_old, "%s/error.log.1", dir);

  LH_CHECK_INT(lh_log_open_files(access, error, err, sizeof err), 0);
  lh_log(LH_LOG_WARN, "first error line");
  lh_log_access("{\"msg\":\"access\",\"n\":1}", 22);
  LH_CHECK(strstr(slurp(error), "first error line") != NULL);
  LH_CHECK(strstr(slurp(error), "\"n\":1") == NULL);
  LH_CHECK_STR(slurp(access), "{\"msg\":\"access\",\"n\":1}\n");

  /* logrotate: rename, then reopen; new lines go to new files at the same paths. */
  LH_CHECK_INT(rename(access, access_old), 0);
  LH_CHECK_INT(rename(error, error_old), 0);
  lh_log(LH_LOG_WARN, "still the old file");
  LH_CHECK_INT(lh_log_reopen(err, sizeof err), 0);
  lh_log(LH_LOG_WARN, "second error line");
  lh_log_access("{\"msg\":\"access\",\"n\":2}", 22);
  LH_CHECK(strstr(slurp(error_old), "still the old file") != NULL);
  LH_CHECK(strstr(slurp(error_old), "second error line") == NULL);
  LH_CHECK(strstr(slurp(error), "second error line") != NULL);
  LH_CHECK(strstr(slurp(error), "first error line") == NULL);
  LH_CHECK_STR(slurp(access_old), "{\"msg\":\"access\",\"n\":1}\n");
  LH_CHECK_STR(slurp(access), "{\"msg\":\"access\",\"n\":2}\n");
  struct stat st;
  mode_t mask = umask(0);
  umask(mask);
  LH_CHECK(stat(access, &st) == 0 && (st.st_mode & 0777) == (0644 & ~mask));

  /* A reopen that cannot open the path (a directory took its place) says so and keeps writing to
   * the file it has. */
  LH_CHECK_INT(rename(error, error_old), 0);
  LH_CHECK_INT(mkdir(error, 0700), 0);
  LH_CHECK_INT(lh_log_reopen(err, sizeof err), LH_EIO);
  LH_CHECK(strstr(err, error) != NULL);
  lh_log(LH_LOG_WARN, "after a failed reopen");
  LH_CHECK(strstr(slurp(error_old), "after a failed reopen") != NULL);
  LH_CHECK_INT(rmdir(error), 0);

  /* A path that cannot be opened is refused at start-up, naming it; nothing changes. */
  char bad[300];
  snprintf(bad, sizeof bad, "%s/no/such/dir.log", dir);
  LH_CHECK_INT(lh_log_open_files(bad, NULL, err, sizeof err), LH_EIO);
  LH_CHECK(strstr(err, bad) != NULL);

  LH_CHECK_INT(lh_log_open_files(NULL, NULL, err, sizeof err), 0); /* back to stderr */
  unlink(access);
  unlink(error);
  unlink(access_old);
  unlink(error_old);
  rmdir(dir);
}

/* Writers on several threads while the files are rotated again and again: every line lands whole
 * in exactly one file, none is lost, none is torn (a writer never sees a closed descriptor). */
#define LH_WRITERS 4
#define LH_LINES_EACH 20000
static atomic_int g_written, g_rotations, g_writers_done;

static void *writer(void *arg) {
  int id = (int)(long)arg;
  char line[128];
  for (int i = 0; i < LH_LINES_EACH; i++) {
    if (i == LH_LINES_EACH / 2)
      while (atomic_load(&g_rotations) == 0) /* the second half goes out after a rotation */
        usleep(100);
    int n = snprintf(line, sizeof line, "{\"w\":%d,\"i\":%d,\"pad\":\"xxxxxxxxxxxxxxxx\"}", id, i);
    lh_log_access(line, (size_t)n);
    atomic_fetch_add(&g_written, 1);
  }
  atomic_fetch_add(&g_writers_done, 1);
  return NULL;
}

static void test_reopen_while_threads_write(void) {
  char dir[] = "/tmp/lh_test_logdir_XXXXXX";
  LH_CHECK(mkdtemp(dir) != NULL);
  char path[256], err[1300];
  snprintf(path, sizeof path, "%s/access.log", dir);
  LH_CHECK_INT(lh_log_open_files(path, NULL, err, sizeof err), 0);
  pthread_t t[LH_WRITERS];
  for (long i = 0; i < LH_WRITERS; i++)
    LH_CHECK_INT(pthread_create(&t[i], NULL, writer, (void *)i), 0);
  while (atomic_load(&g_written) < LH_WRITERS * LH_LINES_EACH / 4)
    usleep(100);
  /* Rotate until every writer is done (at least once: the writers wait for it). */
  int rotations = 0;
  do {
    char old[300];
    snprintf(old, sizeof old, "%s/access.log.%d", dir, rotations);
    LH_CHECK_INT(rename(path, old), 0);
    LH_CHECK_INT(lh_log_reopen(err, sizeof err), 0);
    atomic_store(&g_rotations, ++rotations);
    usleep(200);
  } while (atomic_load(&g_writers_done) < LH_WRITERS && rotations < 100000);
  for (int i = 0; i < LH_WRITERS; i++)
    pthread_join(t[i], NULL);
  LH_CHECK_INT(lh_log_open_files(NULL, NULL, err, sizeof err), 0);

  size_t total = 0, torn = 0, files_used = 0;
  for (int r = 0; r <= rotations; r++) {
    char p[300];
    if (r < rotations)
      snprintf(p, sizeof p, "%s/access.log.%d", dir, r);
    else
      snprintf(p, sizeof p, "%s", path);
    FILE *f = fopen(p, "rb");
    LH_CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0, in_file = 0;
    ssize_t len;
    while (f && (len = getline(&line, &cap, f)) > 0) {
      json_t *o = line[len - 1] == '\n' ? json_loadb(line, (size_t)len - 1, 0, NULL) : NULL;
      torn += !o;
      json_decref(o);
      in_file++;
    }
    free(line);
    if (f)
      fclose(f);
    total += in_file;
    files_used += in_file > 0;
    unlink(p);
  }
  rmdir(dir);
  LH_CHECK_INT(total, LH_WRITERS * LH_LINES_EACH);
  LH_CHECK_INT(torn, 0);
  LH_CHECK(files_used > 1); /* lines before and after the first rotation */
}

static void test_time_format(void) {
  char buf[40];
  LH_CHECK_INT(lh_time_format(0, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
  LH_CHECK_INT(lh_time_format(-1, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
  LH_CHECK_INT(lh_time_format(951782400123LL, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "2000-02-29T00:00:00.123Z");
  LH_CHECK_INT(lh_time_format(0, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
  LH_CHECK_INT(lh_time_format(1764547200999LL, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Mon, 01 Dec 2025 00:00:00 GMT");
  LH_CHECK_INT(lh_time_format(-86400000LL, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Wed, 31 Dec 1969 00:00:00 GMT");
  /* Years beyond 0..9999 and short buffers are refused. */
  LH_CHECK_INT(lh_time_format(253402300800000LL, LH_TIME_ISO8601, buf, sizeof buf), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(-62167219200001LL, LH_TIME_ISO8601, buf, sizeof buf), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(0, LH_TIME_ISO8601, buf, 24), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(0, LH_TIME_HTTP, buf, 29), LH_EINVAL);
  /* The log's timestamp is the ISO style of now. */
  char ts[32];
  lh_log_timestamp(ts, sizeof ts);
  LH_CHECK(strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
}

int main(void) {
  LH_RUN(test_line_is_json_whatever_the_message);
  LH_RUN(test_every_byte_gives_valid_json);
  LH_RUN(test_invalid_utf8_becomes_replacement_characters);
  LH_RUN(test_errors_carry_file_and_line);
  LH_RUN(test_files_and_reopen_after_rename);
  LH_RUN(test_reopen_while_threads_write);
  LH_RUN(test_time_format);
  return lh_test_done();
}
