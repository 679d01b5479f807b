/* Unit tests of the shared fixed-window counters (host/ratelimit.c), including use from threads. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "lh_test.h"
#include "ratelimit.h"

static void test_counts_and_resets(void) {
  lh_ratelimit_clear();
  unsigned retry;
  LH_CHECK_INT(lh_ratelimit_count("k", 1, &retry), 0);
  LH_CHECK_INT(retry, 0);
  LH_CHECK_INT(lh_ratelimit_incr("k", 1, 60, &retry), 1);
  LH_CHECK(retry > 0 && retry <= 60);
  LH_CHECK_INT(lh_ratelimit_incr("k", 1, 60, &retry), 2);
  LH_CHECK_INT(lh_ratelimit_count("k", 1, &retry), 2);
  LH_CHECK_INT(lh_ratelimit_count("other", 5, &retry), 0);
  lh_ratelimit_reset("k", 1);
  LH_CHECK_INT(lh_ratelimit_count("k", 1, &retry), 0);
}

static void test_window_expires(void) {
  lh_ratelimit_clear();
  unsigned retry;
  LH_CHECK_INT(lh_ratelimit_incr("w", 1, 1, &retry), 1);
  struct timespec ts = {1, 100000000};
  nanosleep(&ts, NULL);
  LH_CHECK_INT(lh_ratelimit_count("w", 1, &retry), 0);
  LH_CHECK_INT(lh_ratelimit_incr("w", 1, 1, &retry), 1);
}

static void test_full_store_sweeps(void) {
  lh_ratelimit_clear();
  unsigned retry;
  char key[32];
  for (int i = 0; i < LH_RATELIMIT_MAX_KEYS + 10; i++) {
    int n = snprintf(key, sizeof(key), "key-%d", i);
    lh_ratelimit_incr(key, (size_t)n, 600, &retry);
  }
  /* the newest key is always counted */
  int n = snprintf(key, sizeof(key), "key-%d", LH_RATELIMIT_MAX_KEYS + 9);
  LH_CHECK_INT(lh_ratelimit_count(key, (size_t)n, &retry), 1);
  lh_ratelimit_clear();
}

static void *hammer(void *arg) {
  (void)arg;
  unsigned retry;
  for (int i = 0; i < 10000; i++)
    lh_ratelimit_incr("shared", 6, 600, &retry);
  return NULL;
}

static void test_threads_share_counts(void) {
  lh_ratelimit_clear();
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, hammer, NULL);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  unsigned retry;
  LH_CHECK_INT(lh_ratelimit_count("shared", 6, &retry), 40000);
  lh_ratelimit_clear();
}

int main(void) {
  LH_RUN(test_counts_and_resets);
  LH_RUN(test_window_expires);
  LH_RUN(test_full_store_sweeps);
  LH_RUN(test_threads_share_counts);
  return lh_test_done();
}
