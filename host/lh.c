/* lh.c: the shared helpers declared in lh.h: a message for each LH_E* error code and the
 * monotonic clock every module uses for deadlines and durations. */
#include "lh.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <time.h>

const char *lh_strerror(int err) {
  switch (err) {
  case LH_OK: return "success";
  case LH_ENOMEM: return "out of memory";
  case LH_EINVAL: return "invalid argument";
  case LH_EBUSY: return "queue full";
  case LH_ECLOSED: return "shutting down";
  case LH_ELIMIT: return "limit exceeded";
  case LH_EIO: return "I/O error";
  case LH_ENOTFOUND: return "not found";
  case LH_EEXIST: return "already exists";
  case LH_EMETHOD: return "method not allowed";
  default: return "unknown error";
  }
}

unsigned long long lh_now_ns(void) {
  struct timespec ts;
  /* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux, so the result is not checked. */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

void lh_errf(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

int lh_hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int lh_is_token_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}
