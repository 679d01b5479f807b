/* buf.h: a growable byte buffer, the one way luahost builds output (responses, JSON, logs).
 * A buffer owns its memory; lh_buf_free releases it. Appends fail only on allocation failure,
 * which is sticky: once `failed` is set the buffer ignores appends, so callers check it once. */
#ifndef LH_BUF_H
#define LH_BUF_H

#include <stddef.h>
#include <stdarg.h>

typedef struct lh_buf_s {
  char *data;
  size_t len;
  size_t cap;
  int failed; /* set when an allocation failed; the content is then incomplete */
} lh_buf_t;

void lh_buf_init(lh_buf_t *b);
void lh_buf_free(lh_buf_t *b);
void lh_buf_reset(lh_buf_t *b); /* keeps the allocation */
int lh_buf_reserve(lh_buf_t *b, size_t extra);
int lh_buf_append(lh_buf_t *b, const void *p, size_t n);
int lh_buf_puts(lh_buf_t *b, const char *s);
int lh_buf_putc(lh_buf_t *b, char c);
int lh_buf_printf(lh_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int lh_buf_put_u64(lh_buf_t *b, unsigned long long v);
/* Appends s as a JSON string literal (quotes included). Invalid UTF-8 bytes become U+FFFD. */
int lh_buf_put_json_string(lh_buf_t *b, const char *s, size_t n);
/* Takes the data out of the buffer (caller frees), leaving the buffer empty. */
char *lh_buf_steal(lh_buf_t *b, size_t *len);

#endif
