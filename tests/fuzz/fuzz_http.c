/* libFuzzer target: the llhttp glue (host/http.c). The input is fed twice, whole and in chunks of
 * fuzzer-chosen sizes; both runs must produce the same requests and end the same way (an error
 * answer, a silent close, or waiting for more), because framing must never depend on where reads
 * split. Which error code a request with two faults gets may depend on the split: llhttp reports
 * a name or value span when it ends or when the read ends, so a split can let a limit be counted
 * before a bad byte later in the same span is seen. Every complete request is checked against the
 * limits and the header-name rules. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http.h"
#include "lh.h"

static const lh_http_limits_t limits = {512, 2048, 16, 4096};

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

static void record_request(const lh_request_t *r, lh_buf_t *out) {
  if (r->url_len > limits.max_url_bytes)
    fail("URL over the limit");
  if (r->nheaders > limits.max_header_fields)
    fail("too many header fields");
  if (r->body_len > limits.max_body_bytes)
    fail("body over the limit");
  lh_buf_printf(out, "REQ %s %zu:", r->method, r->url_len);
  lh_buf_append(out, r->url, r->url_len);
  for (size_t i = 0; i < r->nheaders; i++) {
    const lh_header_t *h = &r->headers[i];
    if (h->name_len == 0)
      fail("empty header name");
    for (size_t k = 0; k < h->name_len; k++)
      if (!lh_is_token_char((unsigned char)h->name[k]) || (h->name[k] >= 'A' && h->name[k] <= 'Z'))
        fail("header name not a lower-cased token");
    lh_buf_printf(out, " %zu:", h->name_len);
    lh_buf_append(out, h->name, h->name_len);
    lh_buf_printf(out, "=%zu:", h->value_len);
    lh_buf_append(out, h->value, h->value_len);
  }
  lh_buf_printf(out, " body %zu:", r->body_len);
  if (r->body_len)
    lh_buf_append(out, r->body, r->body_len);
  lh_buf_printf(out, " ka=%d\n", r->keep_alive);
}

/* Feeds data in chunks (sizes from `sizes`, cycled; NULL = one chunk) and records the outcome. */
static void run(const uint8_t *data, size_t size, const uint8_t *sizes, size_t nsizes,
                lh_buf_t *out) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t pos = 0, k = 0;
  int done = 0;
  while (!done && pos < size) {
    size_t chunk = size - pos;
    if (sizes && nsizes) {
      size_t want = (size_t)(sizes[k++ % nsizes] % 16) + 1;
      if (want < chunk)
        chunk = want;
    }
    const char *p = (const char *)data + pos;
    size_t left = chunk;
    while (left > 0) {
      size_t used = 0;
      lh_http_result_t r = lh_http_feed(&h, p, left, &used);
      if (used > left)
        fail("consumed more than fed");
      if (r == LH_HTTP_REQUEST) {
        record_request(&h.req, out);
        lh_http_next(&h);
        p += used;
        left -= used;
        continue;
      }
      if (r == LH_HTTP_ERROR) {
        if (h.err_status < 400 || h.err_status > 505 || !h.err_code)
          fail("an error without a 4xx/5xx status and a code");
        lh_buf_puts(out, "ERR\n");
        done = 1;
      } else if (r == LH_HTTP_CLOSE) {
        lh_buf_puts(out, "CLOSE\n");
        done = 1;
      }
      break;
    }
    pos += chunk;
  }
  lh_http_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t nsizes = data[0] % 8 + 1;
  if (size < 1 + nsizes)
    return 0;
  const uint8_t *sizes = data + 1;
  data += 1 + nsizes;
  size -= 1 + nsizes;
  lh_buf_t whole, split;
  lh_buf_init(&whole);
  lh_buf_init(&split);
  run(data, size, NULL, 0, &whole);
  run(data, size, sizes, nsizes, &split);
  if (whole.len != split.len || (whole.len && memcmp(whole.data, split.data, whole.len) != 0)) {
    fprintf(stderr, "whole:\n%.*s\nsplit:\n%.*s\n", (int)whole.len, whole.data, (int)split.len,
            split.data);
    fail("a split read changed the outcome");
  }
  lh_buf_free(&whole);
  lh_buf_free(&split);
  return 0;
}
