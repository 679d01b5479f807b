/* utf8.c: the UTF-8 validator (see utf8.h). */
#include "utf8.h"

size_t lh_utf8_seq_len(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0x80)
    return 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0; /* overlong */
    else if (c == 0xED)
      hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90; /* overlong */
    else if (c == 0xF4)
      hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0; /* C0, C1, F5-FF or a stray continuation byte */
  }
  if (avail < len || p[1] < lo || p[1] > hi)
    return 0;
  for (size_t k = 2; k < len; k++)
    if ((p[k] & 0xC0) != 0x80)
      return 0;
  return len;
}

size_t lh_utf8_count(const unsigned char *s, size_t n) {
  size_t i = 0, count = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
    } else {
      size_t len = lh_utf8_seq_len(s + i, n - i);
      if (len == 0)
        return (size_t)-1;
      i += len;
    }
    count++;
  }
  return count;
}

int lh_utf8_valid(const unsigned char *s, size_t n) {
  return lh_utf8_count(s, n) != (size_t)-1;
}
