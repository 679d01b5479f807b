/* test_module.c: `luahost.test`, built into luahost-test only (never into the product), so
 * integration tests can prove over HTTP how pools queue, overflow and resume coroutines.
 *
 *   require("luahost.test").block(ms) -> true | nil, "overloaded" | "unavailable"
 *     a job that sleeps ms on the "test" pool; yields.
 *
 * The "test" pool exists when LUAHOST_TEST_POOL_THREADS (1-256) is set; LUAHOST_TEST_POOL_QUEUE
 * (default 1) is how many jobs may wait. The module reads them itself: the host's configuration
 * knows nothing of it. */
#include "test_module.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>

#include "jobs.h"
#include "lh.h"
#include "scheduler.h"

typedef struct {
  lh_ljob_t lj;
  unsigned ms;
} lh_block_job_t;

static void block_work(lh_job_t *job) {
  lh_block_job_t *b = LH_CONTAINER_OF(job, lh_block_job_t, lj.job);
  uv_sleep(b->ms);
}

static int block_push(lh_ljob_t *lj, lua_State *co) {
  if (lj->job.cancelled) {
    lua_pushnil(co);
    lua_pushliteral(co, "unavailable");
    return 2;
  }
  lua_pushboolean(co, 1);
  return 1;
}

static void block_free(lh_ljob_t *lj) {
  free(LH_CONTAINER_OF(lj, lh_block_job_t, lj));
}

static int l_block(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0 && ms <= 60000, 1, "milliseconds between 0 and 60000 expected");
  lh_block_job_t *b = calloc(1, sizeof(*b));
  if (!b)
    return luaL_error(L, "out of memory");
  b->ms = (unsigned)ms;
  b->lj.job.work = block_work;
  b->lj.push = block_push;
  b->lj.free = block_free;
  return lh_sched_await(L, "test", &b->lj);
}

static int test_open(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_block);
  lua_setfield(L, -2, "block");
  return 1;
}

static int env_int(const char *name, int min, int max, int def, int *out, char *err,
                   size_t errlen) {
  const char *v = getenv(name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  char *end;
  long n = strtol(v, &end, 10);
  if (*end || n < min || n > max) {
    lh_errf(err, errlen, "%s: expected an integer between %d and %d", name, min, max);
    return LH_EINVAL;
  }
  *out = (int)n;
  return 0;
}

static int test_init(const lh_config_t *cfg, char *err, size_t errlen) {
  (void)cfg;
  int threads, queue;
  int rc = env_int("LUAHOST_TEST_POOL_THREADS", 0, 256, 0, &threads, err, errlen);
  if (rc == 0)
    rc = env_int("LUAHOST_TEST_POOL_QUEUE", 0, 1000000, 1, &queue, err, errlen);
  if (rc != 0 || threads == 0 || lh_pools_find("test"))
    return rc;
  lh_pool_t *p;
  rc = lh_pool_create(&p, "test", (unsigned)threads, (unsigned)(queue > 0 ? queue : 1));
  if (rc == 0 && (rc = lh_pools_register(p)) != 0)
    lh_pool_destroy(p);
  if (rc != 0)
    lh_errf(err, errlen, "pool test: %s", lh_strerror(rc));
  return rc;
}

/* The pool belongs to the pool registry, which main.c tears down (lh_pools_destroy_all). */
static void test_cleanup(void) {}

const lh_module_t lh_test_module = {"luahost.test", test_open,         test_init,
                                    test_cleanup,   LH_MODULE_SCRIPTS, NULL};
