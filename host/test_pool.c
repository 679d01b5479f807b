/* test_pool.c: TEST-ONLY: the "test" job pool (see test_pool.h). */
#include "test_pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "jobs.h"
#include "lh.h"

static int env_int(const char *var, long lo, long hi, long def, long *out, char *err,
                   size_t errlen) {
  const char *s = getenv(var);
  *out = def;
  if (!s)
    return 0;
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
    lh_errf(err, errlen, "%s: must be an integer between %ld and %ld, got '%.32s'", var, lo, hi, s);
    return LH_EINVAL;
  }
  *out = v;
  return 0;
}

int lh_test_pool_create(char *err, size_t errlen) {
  long threads, queue;
  int rc = env_int("LUAHOST_TEST_POOL_THREADS", 0, 256, 0, &threads, err, errlen);
  if (rc == 0)
    rc = env_int("LUAHOST_TEST_POOL_QUEUE", 0, 1000000, 1, &queue, err, errlen);
  if (rc != 0 || threads == 0)
    return rc;
  lh_pool_t *p;
  rc = lh_pool_create(&p, "test", (unsigned)threads, (unsigned)(queue > 0 ? queue : 1));
  if (rc == 0 && (rc = lh_pools_register(p)) != 0)
    lh_pool_destroy(p);
  if (rc != 0)
    lh_errf(err, errlen, "pool test: %s", lh_strerror(rc));
  return rc;
}
