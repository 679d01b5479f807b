/* log.h: leveled logging to stderr, one JSON object per line, safe from any thread. */
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
/* Writes a preformatted JSON object (without newline) as one line, if level passes. */
void lh_log_json(lh_log_level_t level, const char *json, size_t len);

/* Writes the current UTC time as 2026-11-25T13:00:00.123Z (out: at least 25 bytes; timefmt.h). */
void lh_log_timestamp(char *out, size_t outlen);

#define lh_debug(...) lh_log(LH_LOG_DEBUG, __VA_ARGS__)
#define lh_info(...) lh_log(LH_LOG_INFO, __VA_ARGS__)
#define lh_warn(...) lh_log(LH_LOG_WARN, __VA_ARGS__)
#define lh_error(...) lh_log(LH_LOG_ERROR, __VA_ARGS__)

#endif
