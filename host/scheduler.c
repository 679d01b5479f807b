/* scheduler.c: parks a task's coroutine on a pool job or a loop timer and resumes it on its own
 * loop (see scheduler.h). The scheduler never runs Lua on a pool thread: pool threads only run the
 * job's `work`; `push` and the resume happen in the completion callback on the owning loop. */
#include "scheduler.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>

#include "lh.h"

static const char sched_key = 's'; /* registry key: its address */

void lh_sched_attach(lua_State *L, lh_sched_t *s) {
  lua_pushlightuserdata(L, (void *)&sched_key);
  lua_pushlightuserdata(L, s);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

lh_sched_t *lh_sched_of(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&sched_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lh_sched_t *s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s;
}

void lh_sched_enter(lh_sched_t *s, lh_task_t *t) {
  assert(!s->running);
  s->running = t;
}

void lh_sched_leave(lh_sched_t *s) {
  s->running = NULL;
}

/* The coroutine that called a yielding binding must be the task's own: yielding a coroutine the
 * script created itself would hand the result to the wrong place. */
static lh_task_t *task_for(lua_State *L) {
  lh_sched_t *s = lh_sched_of(L);
  lh_task_t *t = s ? s->running : NULL;
  if (!t || t->co != L || t->suspended)
    return NULL;
  return t;
}

static void suspend(lh_task_t *t, void (*cleanup)(lh_task_t *), void *data) {
  lh_sched_t *s = t->sched;
  t->suspended = 1;
  t->cleanup = cleanup;
  t->cleanup_data = data;
  t->prev = NULL;
  t->next = s->suspended;
  if (s->suspended)
    s->suspended->prev = t;
  s->suspended = t;
  s->nsuspended++;
}

/* Takes t off the suspended list and resumes it with nargs values on its stack. */
static void wake(lh_task_t *t, int nargs) {
  lh_sched_t *s = t->sched;
  assert(t->suspended);
  if (t->prev)
    t->prev->next = t->next;
  else
    s->suspended = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->prev = t->next = NULL;
  t->cleanup = NULL;
  t->cleanup_data = NULL;
  t->suspended = 0;
  s->nsuspended--;
  t->resume(t, nargs);
}

static void ljob_done(lh_job_t *job) {
  lh_ljob_t *lj = LH_CONTAINER_OF(job, lh_ljob_t, job);
  lh_task_t *t = lj->task;
  int n = lj->push(lj, t->co);
  lj->free(lj);
  wake(t, n);
}

int lh_sched_await(lua_State *L, const char *pool_name, lh_ljob_t *lj) {
  lh_task_t *t = task_for(L);
  if (!t) {
    lj->free(lj);
    return luaL_error(L, "this function can only be called while handling a request, "
                         "from the request's own coroutine");
  }
  lh_pool_t *pool = lh_pools_find(pool_name);
  /* After lh_sched_cancel no new wait starts (a shutdown's grace period is over, or a reload's
   * validation was stopped): a script that calls the database in a loop ends instead of going on
   * for ever. */
  if (!pool || t->sched->cancelled) {
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
  suspend(t, NULL, NULL); /* the pool always delivers: nothing to cancel */
  return lua_yield(L, 0);
}

static void sleep_closed(uv_handle_t *h) {
  free(h);
}

static void sleep_fired(uv_timer_t *timer) {
  lh_task_t *t = timer->data;
  uv_close((uv_handle_t *)timer, sleep_closed);
  wake(t, 0);
}

/* The cleanup of a sleeping task: the timer goes, the task wakes now. */
static void sleep_cancel(lh_task_t *t) {
  uv_timer_t *timer = t->cleanup_data;
  uv_timer_stop(timer);
  sleep_fired(timer);
}

int lh_sched_sleep(lua_State *L, double ms) {
  lh_task_t *t = task_for(L);
  if (!t)
    return luaL_error(L, "sleep can only be called while handling a request, from the "
                         "request's own coroutine");
  if (!(ms >= 0) || ms > 3600e3)
    return luaL_argerror(L, 1, "milliseconds between 0 and 3600000 expected");
  if (t->sched->cancelled)
    return luaL_error(L, "the server is shutting down");
  uv_timer_t *timer = malloc(sizeof(*timer));
  if (!timer)
    return luaL_error(L, "out of memory");
  if (uv_timer_init(t->loop, timer) != 0) {
    free(timer);
    return luaL_error(L, "cannot create a timer");
  }
  timer->data = t;
  uv_timer_start(timer, sleep_fired, (uint64_t)ms, 0);
  suspend(t, sleep_cancel, timer);
  return lua_yield(L, 0);
}

void lh_sched_cancel(lh_sched_t *s) {
  s->cancelled = 1;
  /* A cleanup resumes its task, which may finish or wait again (on a job: no cleanup then), so
   * look for the next cancellable task from the head each time. */
  for (;;) {
    lh_task_t *t = s->suspended;
    while (t && !t->cleanup)
      t = t->next;
    if (!t)
      return;
    t->cleanup(t);
  }
}
