/* buf.c: the growable byte buffer of buf.h, plus the two formatting primitives on the hot path of
 * every response: decimal integers (without printf) and JSON string literals (escaping, UTF-8
 * repair).
 *
 * Invariant: whenever data is not NULL it holds len bytes followed by a NUL terminator that is not
 * counted in len, so the content can be used as a C string when it contains no NUL itself. */
#include "buf.h"
#include "utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"

/* The smallest allocation: most buffers hold at least a short response. */
#define LH_BUF_MIN_CAP 64

void lh_buf_init(lh_buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->failed = 0;
}

void lh_buf_free(lh_buf_t *b) {
  free(b->data);
  lh_buf_init(b);
}

void lh_buf_reset(lh_buf_t *b) {
  b->len = 0;
  b->failed = 0;
  if (b->data)
    b->data[0] = '\0';
}

/* Grows the allocation so that extra more bytes and the terminator fit. The capacity doubles so
 * that a sequence of appends costs amortised constant time per byte. */
int lh_buf_reserve(lh_buf_t *b, size_t extra) {
  if (b->failed)
    return LH_ENOMEM;
  if (extra > SIZE_MAX - 1 - b->len)
    goto fail;
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : LH_BUF_MIN_CAP;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (!p)
    goto fail;
  b->data = p;
  b->cap = cap;
  return 0;
fail:
  /* Shrinking the recorded capacity to the content makes every fast path below fall through to
   * this function, which then refuses: that is what keeps the failure sticky. */
  b->failed = 1;
  b->cap = b->len;
  return LH_ENOMEM;
}

/* Appends n bytes when they and the terminator fit without growing; the common case of every
 * small append, kept out of lh_buf_reserve. */
static inline int lh_buf_fits(const lh_buf_t *b, size_t n) {
  return n < b->cap - b->len;
}

int lh_buf_append(lh_buf_t *b, const void *p, size_t n) {
  if (!lh_buf_fits(b, n) && lh_buf_reserve(b, n) != 0)
    return LH_ENOMEM;
  if (n)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int lh_buf_puts(lh_buf_t *b, const char *s) {
  return lh_buf_append(b, s, strlen(s));
}

int lh_buf_putc(lh_buf_t *b, char c) {
  if (!lh_buf_fits(b, 1) && lh_buf_reserve(b, 1) != 0)
    return LH_ENOMEM;
  b->data[b->len++] = c;
  b->data[b->len] = '\0';
  return 0;
}

int lh_buf_printf(lh_buf_t *b, const char *fmt, ...) {
  if (b->failed)
    return LH_ENOMEM;
  va_list ap;
  /* First try into the space already there; most calls fit and format only once. */
  size_t avail = b->cap > b->len ? b->cap - b->len : 0;
  va_start(ap, fmt);
  int n = vsnprintf(avail ? b->data + b->len : NULL, avail, fmt, ap);
  va_end(ap);
  if (n < 0) {
    if (b->data)
      b->data[b->len] = '\0';
    return LH_EINVAL;
  }
  if ((size_t)n >= avail) {
    if (lh_buf_reserve(b, (size_t)n) != 0)
      return LH_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
  return 0;
}

int lh_buf_put_u64(lh_buf_t *b, unsigned long long v) {
  /* Digits are produced backwards into a small scratch array, two at a time from a table, then
   * copied once: this is several times faster than snprintf("%llu"). */
  static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233"
                              "34353637383940414243444546474849505152535455565758596061626364656667"
                              "6869707172737475767778798081828384858687888990919293949596979899";
  char tmp[24];
  char *end = tmp + sizeof(tmp);
  char *p = end;
  while (v >= 100) {
    unsigned d = (unsigned)(v % 100);
    v /= 100;
    p -= 2;
    memcpy(p, pairs + 2 * d, 2);
  }
  if (v >= 10) {
    p -= 2;
    memcpy(p, pairs + 2 * v, 2);
  } else {
    *--p = (char)('0' + v);
  }
  return lh_buf_append(b, p, (size_t)(end - p));
}

/* Class of each byte for JSON string output: 0 copies as is, 1 needs an ASCII escape, 2 starts
 * (or wrongly continues) a multi-byte UTF-8 sequence that must be validated. */
static const unsigned char lh_json_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

/* Appends the escape for one ASCII byte of class 1. */
static void lh_json_put_escape(lh_buf_t *b, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  char esc[6] = {'\\', 'u', '0', '0', 0, 0};
  switch (c) {
  case '"': lh_buf_append(b, "\\\"", 2); return;
  case '\\': lh_buf_append(b, "\\\\", 2); return;
  case '\n': lh_buf_append(b, "\\n", 2); return;
  case '\r': lh_buf_append(b, "\\r", 2); return;
  case '\t': lh_buf_append(b, "\\t", 2); return;
  case '\b': lh_buf_append(b, "\\b", 2); return;
  case '\f': lh_buf_append(b, "\\f", 2); return;
  default:
    esc[4] = hex[c >> 4];
    esc[5] = hex[c & 0xF];
    lh_buf_append(b, esc, 6);
    return;
  }
}

int lh_buf_put_json_string(lh_buf_t *b, const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s;
  const unsigned char *end = p + n;
  const unsigned char *run = p;
  /* Most strings need no escaping: reserve for the common case so that a string without escapes
   * is one scan and one copy. */
  if (!lh_buf_fits(b, n + 2) && lh_buf_reserve(b, n + 2) != 0)
    return LH_ENOMEM;
  b->data[b->len++] = '"';
  while (p < end && lh_json_class[*p] == 0)
    p++;
  if (p == end) {
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len++] = '"';
    b->data[b->len] = '\0';
    return 0;
  }
  while (p < end) {
    unsigned char cls = lh_json_class[*p];
    if (cls == 0) {
      p++;
      continue;
    }
    size_t seq = 0;
    if (cls == 2) {
      seq = lh_utf8_seq_len(p, (size_t)(end - p));
      /* U+2028 and U+2029 are valid JSON but end a line in JavaScript; escape them so the output
       * is safe to embed in a script. */
      int is_sep = seq == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9);
      if (seq && !is_sep) {
        p += seq;
        continue;
      }
    }
    lh_buf_append(b, run, (size_t)(p - run));
    if (cls == 1) {
      lh_json_put_escape(b, *p);
      p++;
    } else if (seq) {
      lh_buf_append(b, p[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
      p += seq;
    } else {
      /* One replacement character per invalid byte, then resynchronise on the next byte. */
      lh_buf_append(b, "\xEF\xBF\xBD", 3);
      p++;
    }
    run = p;
  }
  lh_buf_append(b, run, (size_t)(p - run));
  return lh_buf_putc(b, '"');
}

char *lh_buf_steal(lh_buf_t *b, size_t *len) {
  char *data = b->data;
  size_t n = b->len;
  if (b->failed) {
    lh_buf_free(b);
    if (len)
      *len = 0;
    return NULL;
  }
  if (!data) {
    /* Callers get a string they can free even when nothing was appended. */
    data = malloc(1);
    if (!data)
      return NULL;
    data[0] = '\0';
  }
  lh_buf_init(b);
  if (len)
    *len = n;
  return data;
}
