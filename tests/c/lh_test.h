/* lh_test.h: a minimal unit-test harness. Each test_*.c file is one executable:
 *
 *   static void test_something(void) { LH_CHECK(1 + 1 == 2); LH_CHECK_STR(a, "b"); }
 *   int main(void) { LH_RUN(test_something); return lh_test_done(); }
 *
 * Every case runs even after a failure; the exit code is non-zero if any check failed, and the
 * last line is "N passed, M failed". */
#ifndef LH_TEST_H
#define LH_TEST_H

#include <stdio.h>
#include <string.h>

static int lh_test_failed_checks;
static int lh_test_passed, lh_test_failed;

#define LH_CHECK(cond)                                                                             \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                   \
      lh_test_failed_checks++;                                                                     \
    }                                                                                              \
  } while (0)

#define LH_CHECK_INT(a, b)                                                                         \
  do {                                                                                             \
    long long lh_a_ = (long long)(a), lh_b_ = (long long)(b);                                      \
    if (lh_a_ != lh_b_) {                                                                          \
      fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, lh_a_,       \
              lh_b_);                                                                              \
      lh_test_failed_checks++;                                                                     \
    }                                                                                              \
  } while (0)

#define LH_CHECK_STR(a, b)                                                                         \
  do {                                                                                             \
    const char *lh_a_ = (a), *lh_b_ = (b);                                                         \
    if (!lh_a_ || !lh_b_ || strcmp(lh_a_, lh_b_) != 0) {                                           \
      fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,          \
              lh_a_ ? lh_a_ : "(null)", lh_b_ ? lh_b_ : "(null)");                                 \
      lh_test_failed_checks++;                                                                     \
    }                                                                                              \
  } while (0)

#define LH_RUN(fn)                                                                                 \
  do {                                                                                             \
    int lh_before_ = lh_test_failed_checks;                                                        \
    fn();                                                                                          \
    if (lh_test_failed_checks == lh_before_) {                                                     \
      lh_test_passed++;                                                                            \
      printf("ok   %s\n", #fn);                                                                    \
    } else {                                                                                       \
      lh_test_failed++;                                                                            \
      printf("FAIL %s\n", #fn);                                                                    \
    }                                                                                              \
    fflush(stdout);                                                                                \
  } while (0)

/* How much longer time limits must be under valgrind, which runs code tens of times slower: a
 * test that sets a script budget or bounds a duration multiplies it by this (1 natively). */
#include <valgrind/valgrind.h>
static inline unsigned lh_test_time_scale(void) {
  return RUNNING_ON_VALGRIND ? 40u : 1u;
}

/* Writes text to dir/rel (a fixture file); aborts when it cannot, since the test is then moot. */
#include <stdio.h>
#include <stdlib.h>
static inline void lh_test_write_file(const char *dir, const char *rel, const char *text) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, rel);
  FILE *f = fopen(path, "w");
  if (!f)
    abort();
  fputs(text, f);
  fclose(f);
}

static inline int lh_test_done(void) {
  printf("%d passed, %d failed\n", lh_test_passed, lh_test_failed);
  return lh_test_failed ? 1 : 0;
}

#endif
