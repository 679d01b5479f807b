/* utf8.h: the one UTF-8 validator (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing
 * above U+10FFFF, no truncated sequences). JSON decoding and encoding, the output buffers, BSON,
 * the configuration, the logger and (through luahost.json) the scripts' validator all use it. */
#ifndef LH_UTF8_H
#define LH_UTF8_H

#include <stddef.h>

/* The length of the well-formed sequence at p (1 for ASCII, 2 to 4), or 0 when the bytes there
 * are not one. avail: the bytes readable from p (at least 1). */
size_t lh_utf8_seq_len(const unsigned char *p, size_t avail);
/* 1 when s[0..n) is well-formed UTF-8 (a one-byte NUL is allowed), else 0. */
int lh_utf8_valid(const unsigned char *s, size_t n);
/* The number of code points in s[0..n), or (size_t)-1 when it is not well-formed UTF-8. */
size_t lh_utf8_count(const unsigned char *s, size_t n);

#endif
