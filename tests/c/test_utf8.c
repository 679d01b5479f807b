/* test_utf8.c: unit tests for host/utf8.c, the one UTF-8 validator: every RFC 3629 boundary. */
#include "lh_test.h"
#include "utf8.h"

#include <string.h>

static int valid(const char *s) {
  return lh_utf8_valid((const unsigned char *)s, strlen(s));
}

static void test_boundaries(void) {
  LH_CHECK(valid(""));
  LH_CHECK(valid("ascii \x7f"));
  LH_CHECK(valid("\xc2\x80"));          /* U+0080 */
  LH_CHECK(valid("\xdf\xbf"));          /* U+07FF */
  LH_CHECK(valid("\xe0\xa0\x80"));      /* U+0800 */
  LH_CHECK(valid("\xed\x9f\xbf"));      /* U+D7FF */
  LH_CHECK(valid("\xee\x80\x80"));      /* U+E000 */
  LH_CHECK(valid("\xef\xbf\xbf"));      /* U+FFFF */
  LH_CHECK(valid("\xf0\x90\x80\x80"));  /* U+10000 */
  LH_CHECK(valid("\xf4\x8f\xbf\xbf"));  /* U+10FFFF */
  LH_CHECK(!valid("\x80"));             /* stray continuation */
  LH_CHECK(!valid("\xc0\x80"));         /* overlong NUL */
  LH_CHECK(!valid("\xc1\xbf"));         /* overlong */
  LH_CHECK(!valid("\xe0\x9f\xbf"));     /* overlong 3-byte */
  LH_CHECK(!valid("\xed\xa0\x80"));     /* surrogate */
  LH_CHECK(!valid("\xf0\x8f\xbf\xbf")); /* overlong 4-byte */
  LH_CHECK(!valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
  LH_CHECK(!valid("\xf5\x80\x80\x80"));
  LH_CHECK(!valid("\xe2\x82"));                              /* truncated */
  LH_CHECK(!valid("\xe2\x28\xa1"));                          /* bad continuation */
  LH_CHECK(lh_utf8_valid((const unsigned char *)"a\0b", 3)); /* a one-byte NUL is text */
}

static void test_count_and_seq_len(void) {
  const unsigned char s[] = "caf\xc3\xa9 \xf0\x9f\x98\x80";
  LH_CHECK_INT(lh_utf8_count(s, sizeof s - 1), 6);
  LH_CHECK(lh_utf8_count((const unsigned char *)"\xff", 1) == (size_t)-1);
  LH_CHECK_INT(lh_utf8_seq_len((const unsigned char *)"a", 1), 1);
  LH_CHECK_INT(lh_utf8_seq_len(s + 3, 2), 2);
  LH_CHECK_INT(lh_utf8_seq_len(s + 6, 4), 4);
  LH_CHECK_INT(lh_utf8_seq_len(s + 6, 3), 0); /* not enough bytes available */
}

int main(void) {
  LH_RUN(test_boundaries);
  LH_RUN(test_count_and_seq_len);
  return lh_test_done();
}
