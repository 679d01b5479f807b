/* test_buf.c: unit tests of the byte buffer (host/buf.c): growth, formatting, integer output and
 * JSON string escaping with UTF-8 repair. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "lh_test.h"

/* Escapes s (n bytes) into a fresh buffer and compares with the expected literal. */
static int escapes_to(const char *s, size_t n, const char *expect) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_put_json_string(&b, s, n);
  int ok = !b.failed && b.len == strlen(expect) && memcmp(b.data, expect, b.len) == 0;
  if (!ok)
    fprintf(stderr, "  escaped to [%.*s], expected [%s]\n", (int)b.len, b.data, expect);
  lh_buf_free(&b);
  return ok;
}

static void test_init_empty(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  LH_CHECK(b.data == NULL);
  LH_CHECK_INT(b.len, 0);
  LH_CHECK_INT(b.failed, 0);
  lh_buf_free(&b);
  lh_buf_free(&b); /* freeing twice is harmless */
}

static void test_append_grows_and_terminates(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  for (int i = 0; i < 1000; i++)
    LH_CHECK_INT(lh_buf_append(&b, "abc", 3), 0);
  LH_CHECK_INT(b.len, 3000);
  LH_CHECK(b.cap > b.len);
  LH_CHECK(b.data[b.len] == '\0');
  LH_CHECK(memcmp(b.data + 2997, "abc", 3) == 0);
  lh_buf_free(&b);
}

static void test_puts_putc(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "hello");
  lh_buf_putc(&b, ',');
  lh_buf_puts(&b, "");
  lh_buf_putc(&b, ' ');
  lh_buf_puts(&b, "world");
  LH_CHECK_STR(b.data, "hello, world");
  lh_buf_free(&b);
}

static void test_reset_keeps_allocation(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "some content");
  char *p = b.data;
  size_t cap = b.cap;
  lh_buf_reset(&b);
  LH_CHECK_INT(b.len, 0);
  LH_CHECK(b.data == p);
  LH_CHECK_INT(b.cap, cap);
  LH_CHECK_STR(b.data, "");
  lh_buf_free(&b);
}

static void test_printf(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_printf(&b, "%s=%d", "x", 42);
  LH_CHECK_STR(b.data, "x=42");
  /* Longer than the free space: formatted a second time after growing. */
  char big[300];
  memset(big, 'z', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  lh_buf_printf(&b, "[%s]", big);
  LH_CHECK_INT(b.len, 4 + 301);
  LH_CHECK(b.data[4] == '[' && b.data[b.len - 1] == ']' && b.data[b.len] == '\0');
  lh_buf_free(&b);
}

static void test_put_u64(void) {
  static const struct {
    unsigned long long v;
    const char *s;
  } cases[] = {{0, "0"},
               {7, "7"},
               {10, "10"},
               {99, "99"},
               {100, "100"},
               {1234567, "1234567"},
               {4294967296ULL, "4294967296"},
               {ULLONG_MAX, "18446744073709551615"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    lh_buf_t b;
    lh_buf_init(&b);
    lh_buf_put_u64(&b, cases[i].v);
    LH_CHECK_STR(b.data, cases[i].s);
    lh_buf_free(&b);
  }
}

static void test_steal(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "owned");
  size_t len = 0;
  char *s = lh_buf_steal(&b, &len);
  LH_CHECK_STR(s, "owned");
  LH_CHECK_INT(len, 5);
  LH_CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
  free(s);
  s = lh_buf_steal(&b, &len); /* nothing appended: still a string to free */
  LH_CHECK_STR(s, "");
  LH_CHECK_INT(len, 0);
  free(s);
}

static void test_failed_is_sticky(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "x");
  LH_CHECK(lh_buf_reserve(&b, (size_t)-1) != 0);
  LH_CHECK_INT(b.failed, 1);
  LH_CHECK(lh_buf_puts(&b, "more") != 0);
  LH_CHECK_INT(b.len, 1);
  size_t len = 99;
  LH_CHECK(lh_buf_steal(&b, &len) == NULL);
  LH_CHECK_INT(len, 0);
  lh_buf_free(&b);
}

static void test_json_string_plain(void) {
  LH_CHECK(escapes_to("", 0, "\"\""));
  LH_CHECK(escapes_to("alice", 5, "\"alice\""));
  /* <, > and & stay raw: the output is JSON, not HTML. */
  LH_CHECK(escapes_to("<a>&'/", 6, "\"<a>&'/\""));
}

static void test_json_string_escapes(void) {
  LH_CHECK(escapes_to("a\"b\\c", 5, "\"a\\\"b\\\\c\""));
  LH_CHECK(escapes_to("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""));
  LH_CHECK(escapes_to("\x01\x1f", 2, "\"\\u0001\\u001f\""));
  LH_CHECK(escapes_to("a\0b", 3, "\"a\\u0000b\""));
  LH_CHECK(escapes_to("\x7f", 1, "\"\x7f\""));
}

static void test_json_string_utf8_kept(void) {
  LH_CHECK(escapes_to("h\xc3\xa9llo", 6, "\"h\xc3\xa9llo\""));         /* é */
  LH_CHECK(escapes_to("\xe2\x82\xac", 3, "\"\xe2\x82\xac\""));         /* € */
  LH_CHECK(escapes_to("\xf0\x9f\x98\x80", 4, "\"\xf0\x9f\x98\x80\"")); /* emoji */
  LH_CHECK(escapes_to("\xf4\x8f\xbf\xbf", 4, "\"\xf4\x8f\xbf\xbf\"")); /* U+10FFFF */
}

static void test_json_string_line_separators(void) {
  LH_CHECK(escapes_to("a\342\200\250b\342\200\251", 8, "\"a\\u2028b\\u2029\""));
}

static void test_json_string_invalid_utf8(void) {
  const char *fffd = "\xef\xbf\xbd";
  char expect[64];
  snprintf(expect, sizeof(expect), "\"a%sb\"", fffd);
  LH_CHECK(escapes_to("a\377b", 3, expect));
  LH_CHECK(escapes_to("a\200b", 3, expect)); /* stray continuation byte */
  snprintf(expect, sizeof(expect), "\"%s%s\"", fffd, fffd);
  LH_CHECK(escapes_to("\xc0\xaf", 2, expect)); /* overlong '/' */
  snprintf(expect, sizeof(expect), "\"%s%s%s\"", fffd, fffd, fffd);
  LH_CHECK(escapes_to("\xed\xa0\x80", 3, expect)); /* UTF-16 surrogate */
  LH_CHECK(escapes_to("\xf4\x90\x80", 3, expect)); /* above U+10FFFF, truncated */
  snprintf(expect, sizeof(expect), "\"x%s\"", fffd);
  LH_CHECK(escapes_to("x\xe2", 2, expect)); /* truncated at the end */
}

static void test_json_string_long(void) {
  /* Long runs with escapes spread through them exercise the run-copy path and buffer growth. */
  lh_buf_t b;
  lh_buf_init(&b);
  char s[10000];
  for (size_t i = 0; i < sizeof(s); i++)
    s[i] = (i % 100 == 99) ? '"' : 'a';
  lh_buf_put_json_string(&b, s, sizeof(s));
  LH_CHECK_INT(b.len, 2 + sizeof(s) + sizeof(s) / 100);
  LH_CHECK(b.data[b.len] == '\0');
  lh_buf_free(&b);
}

int main(void) {
  LH_RUN(test_init_empty);
  LH_RUN(test_append_grows_and_terminates);
  LH_RUN(test_puts_putc);
  LH_RUN(test_reset_keeps_allocation);
  LH_RUN(test_printf);
  LH_RUN(test_put_u64);
  LH_RUN(test_steal);
  LH_RUN(test_failed_is_sticky);
  LH_RUN(test_json_string_plain);
  LH_RUN(test_json_string_escapes);
  LH_RUN(test_json_string_utf8_kept);
  LH_RUN(test_json_string_line_separators);
  LH_RUN(test_json_string_invalid_utf8);
  LH_RUN(test_json_string_long);
  return lh_test_done();
}
