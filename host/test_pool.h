/* test_pool.h: TEST-ONLY. The "test" job pool that luahost.block (a test module) sleeps on, so
 * the integration tests can show over HTTP how a pool queues, overflows and resumes coroutines.
 * It is no configuration option: it exists only when LUAHOST_TEST_POOL_THREADS is set in the
 * environment. It belongs with luahost.block in the test-only build; until that build exists the
 * product calls it from main.c and nowhere else. */
#ifndef LH_TEST_POOL_H
#define LH_TEST_POOL_H

#include <stddef.h>

/* Creates and registers the "test" pool when LUAHOST_TEST_POOL_THREADS (1-256) is set, with
 * LUAHOST_TEST_POOL_QUEUE (1-1000000, default 1) waiting jobs. 0 when not asked for or created;
 * LH_EINVAL with a message for a bad value; the pool's own error otherwise. */
int lh_test_pool_create(char *err, size_t errlen);

#endif
