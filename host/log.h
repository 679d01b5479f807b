/* log.h: leveled logging, one JSON object per line, safe from any thread. Lines go to stderr
 * unless the configuration names files (access_log_path for the access lines, error_log_path for
 * every other line); files are reopened at their paths on SIGUSR1 (lh_log_reopen), the logrotate
 * convention. */
#ifndef LH_LOG_H
#define LH_LOG_H

#include <stddef.h>

typedef enum {
  LH_LOG_DEBUG = 0,
  LH_LOG_INFO,
  LH_LOG_WARN,
  LH_LOG_ERROR,
  LH_LOG_OFF
} lh_log_level_t;

void lh_log_set_level(lh_log_level_t level);
lh_log_level_t lh_log_get_level(void);
int lh_log_parse_level(const char *name, lh_log_level_t *out); /* 0 or LH_EINVAL */
/* Writes {"ts":..., "level":..., "msg":...} with msg formatted printf-style. */
void lh_log(lh_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same line with "file" and "line" fields naming where it was logged (file: NULL for none). */
void lh_log_at(lh_log_level_t level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes a preformatted JSON object (without newline) as one line, if level passes. */
void lh_log_json(lh_log_level_t level, const char *json, size_t len);
/* Writes a preformatted access line (a JSON object without newline) to the access log. */
void lh_log_access(const char *json, size_t len);

/* Sends access lines and all other lines to files (opened for appending, created 0644) instead of
 * stderr; NULL or "" for stderr. At start-up, before other threads log: going back to stderr
 * closes the file. 0, or LH_EIO with the path and the reason in err (nothing changes then). */
int lh_log_open_files(const char *access_path, const char *error_path, char *err, size_t errlen);
/* Opens the log files again at their paths (after logrotate moved them) and swaps them in under
 * the descriptors writers use (dup2), so that a concurrent write goes whole to the old file or the
 * new one. Safe from any thread. 0, or LH_EIO with the reason in err (that file stays in use). */
int lh_log_reopen(char *err, size_t errlen);

/* Writes the current UTC time as 2026-11-25T13:00:00.123Z (out: at least 25 bytes; timefmt.h). */
void lh_log_timestamp(char *out, size_t outlen);

#define lh_debug(...) lh_log(LH_LOG_DEBUG, __VA_ARGS__)
#define lh_info(...) lh_log(LH_LOG_INFO, __VA_ARGS__)
#define lh_warn(...) lh_log_at(LH_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define lh_error(...) lh_log_at(LH_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

#endif
