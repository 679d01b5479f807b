/* timefmt.c: the time formatter (see timefmt.h). */
#include "timefmt.h"

#include <stdio.h>
#include <time.h>

#include "lh.h"

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

int lh_time_format(int64_t ms, lh_time_style_t style, char *out, size_t outlen) {
  static const char *const wdays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  /* Floor division keeps instants before 1970 right (-1 ms is 1969-12-31T23:59:59.999Z). */
  int64_t secs = ms / 1000, msec = ms % 1000;
  if (msec < 0) {
    msec += 1000;
    secs -= 1;
  }
  int64_t days = secs / 86400, sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    days -= 1;
  }
  int64_t year;
  int month, day;
  civil_from_days(days, &year, &month, &day);
  size_t need = style == LH_TIME_ISO8601 ? 25 : 30;
  if (year < 0 || year > 9999 || outlen < need)
    return LH_EINVAL;
  int hh = (int)(sod / 3600), mi = (int)(sod / 60 % 60), ss = (int)(sod % 60);
  if (style == LH_TIME_ISO8601) {
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)year, month, day, hh, mi, ss,
             (int)msec);
  } else {
    int64_t wd = days % 7; /* 1970-01-01 was a Thursday */
    if (wd < 0)
      wd += 7;
    snprintf(out, outlen, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[wd], day, months[month - 1],
             (int)year, hh, mi, ss);
  }
  return 0;
}

int64_t lh_time_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
