/* script_set.c: reading a generation's scripts and hashing them (see script_set.h). */
#include "script_set.h"

#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lh.h"

#define LH_MAX_SCRIPT_FILES 1000
#define LH_MAX_SCRIPT_BYTES (1 << 20)
#define LH_MAX_SCRIPT_DEPTH 16

void lh_script_set_free(lh_script_set_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->files[i].path);
    free(s->files[i].src);
  }
  free(s->files);
  s->files = NULL;
  s->n = s->cap = 0;
}

static int read_file(const char *full, char **out, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(full, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", full, strerror(errno));
    return LH_EIO;
  }
  char *buf = malloc(LH_MAX_SCRIPT_BYTES + 1);
  size_t n = buf ? fread(buf, 1, LH_MAX_SCRIPT_BYTES + 1, f) : 0;
  int failed = ferror(f);
  fclose(f);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  if (failed || n > LH_MAX_SCRIPT_BYTES) {
    free(buf);
    snprintf(err, errlen, "%s: %s", full, failed ? "read error" : "larger than 1 MiB");
    return LH_EIO;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int scan_dir(lh_script_set_t *set, const char *root, const char *rel, int depth, char *err,
                    size_t errlen) {
  char dir[2048];
  int n = snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
  if (n < 0 || (size_t)n >= sizeof(dir)) {
    snprintf(err, errlen, "scripts directory %s: path too long", root);
    return LH_ELIMIT;
  }
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "scripts directory %s: %s", dir, strerror(errno));
    return LH_EIO;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue; /* hidden files, editor swap files, "." and ".." */
    char relpath[1024], full[3072];
    int n1 = snprintf(relpath, sizeof(relpath), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    int n2 = snprintf(full, sizeof(full), "%s/%s", root, relpath);
    if (n1 < 0 || (size_t)n1 >= sizeof(relpath) || n2 < 0 || (size_t)n2 >= sizeof(full)) {
      snprintf(err, errlen, "a script path is too long (below %s)", dir);
      rc = LH_ELIMIT;
      break;
    }
    struct stat st;
    if (stat(full, &st) != 0)
      continue; /* vanished while we read: the next reload sees the final state */
    if (S_ISDIR(st.st_mode)) {
      if (depth >= LH_MAX_SCRIPT_DEPTH) {
        snprintf(err, errlen, "%s: directories nested too deep", full);
        rc = LH_ELIMIT;
      } else {
        rc = scan_dir(set, root, relpath, depth + 1, err, errlen);
      }
      continue;
    }
    size_t nl = strlen(e->d_name);
    if (!S_ISREG(st.st_mode) || nl < 5 || strcmp(e->d_name + nl - 4, ".lua") != 0)
      continue;
    if (set->n == LH_MAX_SCRIPT_FILES) {
      snprintf(err, errlen, "%s: more than %d script files", root, LH_MAX_SCRIPT_FILES);
      rc = LH_ELIMIT;
      break;
    }
    if (set->n == set->cap) {
      size_t cap = set->cap ? set->cap * 2 : 16;
      lh_script_file_t *f = realloc(set->files, cap * sizeof(*f));
      if (!f) {
        rc = LH_ENOMEM;
        break;
      }
      set->files = f;
      set->cap = cap;
    }
    lh_script_file_t *sf = &set->files[set->n];
    rc = read_file(full, &sf->src, &sf->len, err, errlen);
    if (rc == 0) {
      sf->path = strdup(relpath);
      if (!sf->path) {
        free(sf->src);
        rc = LH_ENOMEM;
      } else {
        set->n++;
      }
    }
  }
  closedir(d);
  return rc;
}

static int cmp_files(const void *a, const void *b) {
  return strcmp(((const lh_script_file_t *)a)->path, ((const lh_script_file_t *)b)->path);
}

/* The generation id is a hash of every path and content: two hosts with the same scripts report
 * the same id. */
static void generation_id(lh_script_set_t *set, char out[17]) {
  crypto_generichash_state st;
  unsigned char h[8];
  crypto_generichash_init(&st, NULL, 0, sizeof(h));
  for (size_t i = 0; i < set->n; i++) {
    crypto_generichash_update(&st, (const unsigned char *)set->files[i].path,
                              strlen(set->files[i].path) + 1);
    crypto_generichash_update(&st, (const unsigned char *)set->files[i].src, set->files[i].len);
  }
  crypto_generichash_final(&st, h, sizeof(h));
  sodium_bin2hex(out, 17, h, sizeof(h));
}

int lh_script_set_read(lh_script_set_t *set, const char *root, char *err, size_t errlen) {
  set->files = NULL;
  set->n = set->cap = 0;
  set->generation[0] = '\0';
  int rc = scan_dir(set, root, "", 0, err, errlen);
  if (rc != 0) {
    lh_script_set_free(set);
    return rc;
  }
  qsort(set->files, set->n, sizeof(*set->files), cmp_files);
  generation_id(set, set->generation);
  return 0;
}
