/* scheduler.c: parks a request's coroutine on a pool job or a loop timer and resumes it on its own
 * loop (see scheduler.h). The scheduler never runs Lua on a pool thread: pool threads only run the
 * job's `work`; `push` and the resume happen in the completion callback on the owning loop. */
#include "scheduler.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "lh.h"
#include "log.h"

static __thread lh_task_t *current_task;
static __thread int jobs_in_flight;

int lh_sched_jobs_in_flight(void) {
  return jobs_in_flight;
}

void lh_sched_set_current(lh_task_t *task) {
  current_task = task;
}

lh_task_t *lh_sched_current(void) {
  return current_task;
}

/* The coroutine that called a yielding binding must be the request's own: yielding a coroutine
 * the script created itself would hand the result to the wrong place. */
static lh_task_t *task_for(lua_State *L) {
  lh_task_t *t = current_task;
  if (!t || t->co != L || t->suspended)
    return NULL;
  return t;
}

static void ljob_done(lh_job_t *job) {
  lh_ljob_t *lj = LH_CONTAINER_OF(job, lh_ljob_t, job);
  lh_task_t *t = lj->task;
  jobs_in_flight--;
  int n = lj->push(lj, t->co);
  lj->free(lj);
  t->suspended = 0;
  t->resume(t, n);
}

int lh_sched_await(lua_State *L, const char *pool_name, lh_ljob_t *lj) {
  lh_task_t *t = task_for(L);
  if (!t) {
    lj->free(lj);
    return luaL_error(L, "this function can only be called while handling a request, "
                         "from the request's own coroutine");
  }
  lh_pool_t *pool = lh_pools_find(pool_name);
  if (!pool) {
    lj->free(lj);
    lua_pushnil(L);
    lua_pushliteral(L, "unavailable");
    return 2;
  }
  lj->task = t;
  lj->job.done = ljob_done;
  lj->job.cancelled = 0;
  int rc = lh_pool_submit(pool, &lj->job, t->cq);
  if (rc != 0) {
    lj->free(lj);
    lua_pushnil(L);
    if (rc == LH_EBUSY)
      lua_pushliteral(L, "overloaded");
    else
      lua_pushliteral(L, "unavailable");
    return 2;
  }
  jobs_in_flight++;
  t->suspended = 1;
  return lua_yield(L, 0);
}

typedef struct lh_sleep_s {
  uv_timer_t timer;
  lh_task_t *task;
  struct lh_sleep_s *prev, *next; /* this thread's sleeps, for shutdown */
} lh_sleep_t;

static __thread lh_sleep_t *sleeps;
static __thread int sleeps_cancelled;

static void sleep_closed(uv_handle_t *h) {
  free(LH_CONTAINER_OF((uv_timer_t *)h, lh_sleep_t, timer));
}

static void sleep_wake(lh_sleep_t *s) {
  lh_task_t *t = s->task;
  if (s->prev)
    s->prev->next = s->next;
  else
    sleeps = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, sleep_closed);
  t->suspended = 0;
  t->resume(t, 0);
}

static void sleep_fired(uv_timer_t *timer) {
  sleep_wake(LH_CONTAINER_OF(timer, lh_sleep_t, timer));
}

void lh_sched_cancel_sleeps(void) {
  sleeps_cancelled = 1;
  while (sleeps)
    sleep_wake(sleeps);
}

int lh_sched_sleep(lua_State *L, double ms) {
  lh_task_t *t = task_for(L);
  if (!t)
    return luaL_error(L, "sleep can only be called while handling a request, from the "
                         "request's own coroutine");
  if (!(ms >= 0) || ms > 3600e3)
    return luaL_argerror(L, 1, "milliseconds between 0 and 3600000 expected");
  if (sleeps_cancelled)
    return luaL_error(L, "the server is shutting down");
  lh_sleep_t *s = malloc(sizeof(*s));
  if (!s)
    return luaL_error(L, "out of memory");
  s->task = t;
  if (uv_timer_init(t->loop, &s->timer) != 0) {
    free(s);
    return luaL_error(L, "cannot create a timer");
  }
  uv_timer_start(&s->timer, sleep_fired, (uint64_t)ms, 0);
  s->prev = NULL;
  s->next = sleeps;
  if (sleeps)
    sleeps->prev = s;
  sleeps = s;
  t->suspended = 1;
  return lua_yield(L, 0);
}
