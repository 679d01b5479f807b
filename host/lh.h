/* lh.h: the few definitions every luahost module shares: error codes and small helpers.
 * Functions return 0 or a negative LH_E* code (libuv style); lh_strerror names the code. */
#ifndef LH_H
#define LH_H

#include <stddef.h>

enum {
  LH_OK = 0,
  LH_ENOMEM = -1,    /* allocation failed */
  LH_EINVAL = -2,    /* invalid argument or value */
  LH_EBUSY = -3,     /* a bounded queue is full */
  LH_ECLOSED = -4,   /* the pool or server is shutting down */
  LH_ELIMIT = -5,    /* a configured limit was exceeded */
  LH_EIO = -6,       /* an I/O or system call failed */
  LH_ENOTFOUND = -7, /* no such thing */
  LH_EEXIST = -8,    /* already there (a duplicate name or route) */
  LH_EMETHOD = -9    /* the thing exists, but not for this method (an HTTP 405) */
};

const char *lh_strerror(int err);

/* The largest integer every number path treats as an integer: 2^53 - 1, the last one a double
 * (a Lua number) holds exactly with its neighbours (JavaScript's Number.MAX_SAFE_INTEGER). The
 * JSON decoder refuses integers beyond it, BSON stores larger whole numbers as doubles, JWT
 * refuses them as integer claims, and scripts read it as json.max_safe_integer. */
#define LH_MAX_SAFE_INT 9007199254740991LL

#define LH_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define LH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Writes a printf-style message into err (errlen bytes); a NULL or empty err is ignored. */
void lh_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* 1 for an RFC 9110 token character (header field names, methods), else 0. */
int lh_is_token_char(unsigned char c);

/* The value of a hexadecimal digit, or -1. */
int lh_hexval(int c);

/* Monotonic clock in nanoseconds. */
unsigned long long lh_now_ns(void);

#endif
