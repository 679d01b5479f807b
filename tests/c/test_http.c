/* Unit tests of the llhttp glue (host/http.c): every limit, framing error, pipelining order and
 * the parser's phases, fed byte strings directly (no sockets). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "lh_test.h"

static const lh_http_limits_t limits = {8192, 16384, 100, 65536};

/* Feeds the whole string; returns the result of the last feed and the first request's status. */
static lh_http_result_t feed_all(lh_http_t *h, const char *s, size_t *used) {
  return lh_http_feed(h, s, strlen(s), used);
}

static void expect_error(const char *req, int status, const char *code) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  lh_http_result_t r = feed_all(&h, req, &used);
  LH_CHECK_INT(r, LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, status);
  if (code)
    LH_CHECK_STR(h.err_code, code);
  lh_http_free(&h);
}

static void test_simple_get(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  const char *req = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: t\r\nX-Thing:  v  \r\n\r\n";
  LH_CHECK_INT(feed_all(&h, req, &used), LH_HTTP_REQUEST);
  LH_CHECK_INT(used, strlen(req));
  LH_CHECK_STR(h.req.method, "GET");
  LH_CHECK_INT(h.req.path_len, 4);
  LH_CHECK(memcmp(h.req.path, "/a/b", 4) == 0);
  LH_CHECK_INT(h.req.query_len, 7);
  LH_CHECK(memcmp(h.req.query, "x=1&y=2", 7) == 0);
  const lh_header_t *x = lh_request_header(&h.req, "x-thing");
  LH_CHECK(x && x->value_len == 1 && x->value[0] == 'v');
  LH_CHECK(lh_request_header(&h.req, "host") != NULL);
  LH_CHECK(h.req.keep_alive);
  LH_CHECK(h.req.body == NULL);
  lh_http_free(&h);
}

static void test_split_across_reads(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  const char *req =
      "POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nX-Long-Name: value\r\n\r\nhello";
  size_t n = strlen(req), used;
  for (size_t i = 0; i < n - 1; i++) {
    LH_CHECK_INT(lh_http_feed(&h, req + i, 1, &used), LH_HTTP_NEED_MORE);
    if (i == 0)
      LH_CHECK_INT(h.phase, LH_PHASE_HEADERS);
  }
  LH_CHECK_INT(h.phase, LH_PHASE_BODY);
  LH_CHECK_INT(lh_http_feed(&h, req + n - 1, 1, &used), LH_HTTP_REQUEST);
  LH_CHECK_INT(h.req.body_len, 5);
  LH_CHECK(memcmp(h.req.body, "hello", 5) == 0);
  const lh_header_t *x = lh_request_header(&h.req, "x-long-name");
  LH_CHECK(x && x->value_len == 5 && memcmp(x->value, "value", 5) == 0);
  lh_http_free(&h);
}

static void test_pipelined_one_at_a_time(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  const char *reqs = "GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"
                     "POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"
                     "GET /3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  const char *p = reqs;
  size_t left = strlen(reqs), used;
  const char *paths[] = {"/1", "/2", "/3"};
  for (int i = 0; i < 3; i++) {
    LH_CHECK_INT(lh_http_feed(&h, p, left, &used), LH_HTTP_REQUEST);
    LH_CHECK(h.req.path_len == 2 && memcmp(h.req.path, paths[i], 2) == 0);
    if (i == 1)
      LH_CHECK(h.req.body_len == 2 && memcmp(h.req.body, "ok", 2) == 0);
    if (i == 2)
      LH_CHECK(!h.req.keep_alive);
    p += used;
    left -= used;
    lh_http_next(&h);
  }
  LH_CHECK_INT(left, 0);
  lh_http_free(&h);
}

static void test_framing_errors(void) {
  expect_error(
      "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
      "bad_request");
  expect_error("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400,
               "bad_request");
  expect_error("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1a\r\n\r\n", 400, "bad_request");
  expect_error("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_request");
  expect_error("GET / HTTP/1.1\r\nHost: t\r\nBad Name: v\r\n\r\n", 400, "bad_request");
  expect_error("GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400, NULL);
  expect_error("GET / HTTP/1.1\r\n\r\n", 400, "missing_host");
  expect_error("GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad_request");
  expect_error("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, "method_not_allowed");
  expect_error("GET / HTTP/1.1\r\nHost: t\r\nExpect: nope\r\n\r\n", 417, "expectation_failed");
}

static void test_http10_without_host(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(feed_all(&h, "GET / HTTP/1.0\r\n\r\n", &used), LH_HTTP_REQUEST);
  LH_CHECK(!h.req.keep_alive);
  lh_http_free(&h);
}

static char *repeat(const char *prefix, char c, size_t n, const char *suffix) {
  size_t pl = strlen(prefix), sl = strlen(suffix);
  char *s = malloc(pl + n + sl + 1);
  memcpy(s, prefix, pl);
  memset(s + pl, c, n);
  memcpy(s + pl + n, suffix, sl + 1);
  return s;
}

static void test_size_limits(void) {
  char *s = repeat("GET /", 'a', 8200, " HTTP/1.1\r\nHost: t\r\n\r\n");
  expect_error(s, 414, "uri_too_long");
  free(s);
  s = repeat("GET / HTTP/1.1\r\nHost: t\r\nX: ", 'v', 17000, "\r\n\r\n");
  expect_error(s, 431, "headers_too_large");
  free(s);
  char many[4096] = "GET / HTTP/1.1\r\nHost: t\r\n";
  for (int i = 0; i < 100; i++)
    strcat(many, "X-A: b\r\n");
  strcat(many, "\r\n");
  expect_error(many, 431, "too_many_headers");
  expect_error("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n\r\n", 413,
               "body_too_large");
  /* exactly at the limit is fine */
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  s = repeat("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n", 'b', 65536, "");
  LH_CHECK_INT(feed_all(&h, s, &used), LH_HTTP_REQUEST);
  LH_CHECK_INT(h.req.body_len, 65536);
  free(s);
  lh_http_free(&h);
}

static void test_413_before_the_body_arrives(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  /* the header block alone decides */
  LH_CHECK_INT(feed_all(&h, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n", &used),
               LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, 413);
  lh_http_free(&h);
}

static void test_chunked_total_limit(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(
      feed_all(&h, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n", &used),
      LH_HTTP_NEED_MORE);
  char *chunk = repeat("8000\r\n", 'c', 0x8000, "\r\n");
  LH_CHECK_INT(feed_all(&h, chunk, &used), LH_HTTP_NEED_MORE);
  LH_CHECK_INT(feed_all(&h, chunk, &used), LH_HTTP_NEED_MORE); /* exactly 64 KiB */
  LH_CHECK_INT(feed_all(&h, "1\r\nz\r\n", &used), LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, 413);
  free(chunk);
  lh_http_free(&h);
}

static void test_expect_continue_flag(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(
      feed_all(&h,
               "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
               &used),
      LH_HTTP_NEED_MORE);
  LH_CHECK(h.send_continue);
  LH_CHECK_INT(feed_all(&h, "{}", &used), LH_HTTP_REQUEST);
  LH_CHECK(!h.send_continue);
  lh_http_free(&h);
}

static void test_h2_preface_closes(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(feed_all(&h, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &used), LH_HTTP_CLOSE);
  lh_http_free(&h);
  /* The same preface one byte at a time. */
  const char *pre = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  lh_http_init(&h, &limits);
  lh_http_result_t r = LH_HTTP_NEED_MORE;
  for (size_t i = 0; pre[i] && r == LH_HTTP_NEED_MORE; i++)
    r = lh_http_feed(&h, pre + i, 1, &used);
  LH_CHECK_INT(r, LH_HTTP_CLOSE);
  lh_http_free(&h);
}

static void test_upgrade_is_served_as_http11(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  const char *reqs = "GET /a HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                     "GET /b HTTP/1.1\r\nHost: t\r\n\r\n";
  LH_CHECK_INT(feed_all(&h, reqs, &used), LH_HTTP_REQUEST);
  LH_CHECK(h.req.path_len == 2 && h.req.path[1] == 'a');
  lh_http_next(&h);
  lh_http_result_t r = lh_http_feed(&h, reqs + used, strlen(reqs) - used, &used);
  LH_CHECK_INT(r, LH_HTTP_REQUEST);
  LH_CHECK(h.req.path_len == 2 && h.req.path[1] == 'b');
  lh_http_free(&h);
}

/* Trailers after the last chunk must not move the header storage the request already points to
 * (enough of them to force the buffers to grow), and still count against the header limit. */
static void test_chunked_trailers_are_dropped(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  lh_buf_t req;
  lh_buf_init(&req);
  lh_buf_puts(&req, "POST /anyjson HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n");
  for (int i = 0; i < 20; i++)
    lh_buf_printf(&req, "X-H%d: v\r\n", i);
  lh_buf_puts(&req, "\r\n2\r\n{}\r\n0\r\n");
  for (int i = 0; i < 30; i++)
    lh_buf_printf(&req, "X-Trailer-%d: %0200d\r\n", i, i);
  lh_buf_puts(&req, "\r\n");
  LH_CHECK_INT(lh_http_feed(&h, req.data, req.len, &used), LH_HTTP_REQUEST);
  LH_CHECK(h.req.path_len == 8 && memcmp(h.req.path, "/anyjson", 8) == 0);
  const lh_header_t *x = lh_request_header(&h.req, "x-h19");
  LH_CHECK(x && x->value_len == 1 && x->value[0] == 'v');
  LH_CHECK(lh_request_header(&h.req, "x-trailer-0") == NULL);
  LH_CHECK(h.req.body_len == 2 && memcmp(h.req.body, "{}", 2) == 0);
  lh_http_free(&h);
  /* trailers past the header limit are refused */
  lh_http_init(&h, &limits);
  lh_buf_reset(&req);
  lh_buf_puts(&req, "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
  for (int i = 0; i < 100; i++)
    lh_buf_printf(&req, "X-T: %0200d\r\n", i);
  lh_buf_puts(&req, "\r\n");
  LH_CHECK_INT(lh_http_feed(&h, req.data, req.len, &used), LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, 431);
  lh_http_free(&h);
  lh_buf_free(&req);
}

static void test_error_is_sticky(void) {
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(feed_all(&h, "GARBAGE\r\n\r\n", &used), LH_HTTP_ERROR);
  LH_CHECK_INT(feed_all(&h, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &used), LH_HTTP_ERROR);
  lh_http_free(&h);
}

/* Feeds req whole and then one byte at a time: both must end in the same error. Framing decisions
 * must not depend on where the reads happen to split. */
static void expect_error_split(const char *req, int status, const char *code) {
  expect_error(req, status, code);
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t n = strlen(req), used = 0;
  lh_http_result_t r = LH_HTTP_NEED_MORE;
  for (size_t i = 0; i < n && r == LH_HTTP_NEED_MORE; i++)
    r = lh_http_feed(&h, req + i, 1, &used);
  LH_CHECK_INT(r, LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, status);
  LH_CHECK_STR(h.err_code, code);
  lh_http_free(&h);
}

/* CVE-2023-30589: llhttp before 9 ended a header line at a bare CR, so the Content-Length hidden
 * behind it framed a body and the rest was parsed as a second, smuggled request. */
static void test_bare_cr_in_header_is_refused(void) {
  expect_error_split("POST / HTTP/1.1\r\nHost: h\r\nX:\rxContent-Length: 5\r\n\r\n"
                     "helloGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
                     400, "bad_request");
  expect_error_split("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400, "bad_request");
}

static void test_empty_header_name_is_refused(void) {
  expect_error_split("POST / HTTP/1.1\r\nHost: h\r\n: chunked\r\n\r\n", 400, "bad_request");
}

/* An obs-fold may not continue a header whose value is empty either: that turned
 * `Transfer-Encoding:` + ` chunked` into chunked framing. */
static void test_fold_after_empty_value_is_refused(void) {
  expect_error_split("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                     "5\r\nhello\r\n0\r\n\r\n",
                     400, "bad_request");
  expect_error_split("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n 9\r\n\r\nxxxxxxxxx", 400,
                     "bad_request");
}

/* RFC 9112 §3.2: a request with more than one Host, or an invalid one, gets 400. */
static void test_bad_host_headers_are_refused(void) {
  expect_error_split("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_host");
  expect_error_split("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "bad_host");
  expect_error_split("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_host");
  expect_error_split("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "bad_host");
  expect_error_split("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "bad_host");
  expect_error_split("GET / HTTP/1.0\r\nHost: a@b\r\n\r\n", 400, "bad_host");
  /* Well-formed hosts still pass: names, ports, IPv4 and IPv6 literals. */
  const char *good[] = {"example.com", "example.com:8080", "127.0.0.1:8000", "[::1]:8000",
                        "a-b.c_d"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char req[200];
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
    lh_http_t h;
    lh_http_init(&h, &limits);
    size_t used;
    LH_CHECK_INT(feed_all(&h, req, &used), LH_HTTP_REQUEST);
    lh_http_free(&h);
  }
}

/* Found by tests/fuzz/fuzz_http: a first read of just "PRI" was taken for the HTTP/2 preface and
 * closed, while the same bytes in one read were a 400. */
static void test_a_short_read_of_pri_is_not_the_preface(void) {
  const char *req = "PRIT /c HTTP/1.1\r\nHost: t\r\n\r\n";
  expect_error_split(req, 400, "bad_request");
  lh_http_t h;
  lh_http_init(&h, &limits);
  size_t used;
  LH_CHECK_INT(lh_http_feed(&h, req, 3, &used), LH_HTTP_NEED_MORE);
  LH_CHECK_INT(lh_http_feed(&h, req + 3, strlen(req) - 3, &used), LH_HTTP_ERROR);
  LH_CHECK_INT(h.err_status, 400);
  lh_http_free(&h);
}

int main(void) {
  LH_RUN(test_simple_get);
  LH_RUN(test_split_across_reads);
  LH_RUN(test_pipelined_one_at_a_time);
  LH_RUN(test_framing_errors);
  LH_RUN(test_http10_without_host);
  LH_RUN(test_size_limits);
  LH_RUN(test_413_before_the_body_arrives);
  LH_RUN(test_chunked_total_limit);
  LH_RUN(test_expect_continue_flag);
  LH_RUN(test_h2_preface_closes);
  LH_RUN(test_upgrade_is_served_as_http11);
  LH_RUN(test_chunked_trailers_are_dropped);
  LH_RUN(test_error_is_sticky);
  LH_RUN(test_bare_cr_in_header_is_refused);
  LH_RUN(test_empty_header_name_is_refused);
  LH_RUN(test_fold_after_empty_value_is_refused);
  LH_RUN(test_bad_host_headers_are_refused);
  LH_RUN(test_a_short_read_of_pri_is_not_the_preface);
  return lh_test_done();
}
