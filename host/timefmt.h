/* timefmt.h: the one time formatter: UTC instants as ISO 8601 (logs, BSON dates shown to
 * scripts) or as an HTTP date (the Date header), computed from the civil calendar directly, so
 * neither the locale nor gmtime_r's time_t range is involved. */
#ifndef LH_TIMEFMT_H
#define LH_TIMEFMT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  LH_TIME_ISO8601, /* 2026-11-25T13:00:00.123Z (24 bytes) */
  LH_TIME_HTTP     /* Wed, 25 Nov 2026 13:00:00 GMT (29 bytes, RFC 9110 IMF-fixdate) */
} lh_time_style_t;

/* Formats ms since 1970-01-01T00:00:00Z (negative: before). 0, or LH_EINVAL for a year outside
 * 0..9999 or an out buffer too small (then out is untouched). */
int lh_time_format(int64_t ms, lh_time_style_t style, char *out, size_t outlen);
/* The current wall-clock time in ms since the epoch. */
int64_t lh_time_now_ms(void);

#endif
