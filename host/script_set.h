/* script_set.h: the bytes of one generation of scripts: every .lua file under the scripts
 * directory read once (sorted by path), and the generation id, a hash of every path and content,
 * so two hosts with the same scripts report the same id. */
#ifndef LH_SCRIPT_SET_H
#define LH_SCRIPT_SET_H

#include <stddef.h>

typedef struct {
  char *path; /* relative to the scripts directory */
  char *src;
  size_t len;
} lh_script_file_t;

typedef struct lh_script_set_s {
  lh_script_file_t *files;
  size_t n, cap;
  char generation[17]; /* 16 hex digits */
} lh_script_set_t;

/* Reads every .lua file under root (hidden files skipped; at most 1000 files of 1 MiB each, 16
 * directories deep). On failure frees what was read and names the cause in err. */
int lh_script_set_read(lh_script_set_t *set, const char *root, char *err, size_t errlen);
void lh_script_set_free(lh_script_set_t *set);

#endif
