/* scheduler.h: suspends a request's coroutine while blocking work runs on a pool, and resumes it on
 * its own loop when the work is done. The one place where coroutines are parked and woken.
 *
 * Shape of a yielding binding (as in lua-nginx-module): check the arguments, allocate a struct that
 * embeds an lh_ljob_t, fill in `job.work`, `push` and `free`, then `return lh_sched_await(L, "db",
 * lj)`.
 * - `job.work` runs on a pool thread: only plain C, never the lua_State.
 * - `push` runs on the loop thread and pushes the results onto the coroutine (`co`); it must also
 *   handle `lj->job.cancelled` (the pool shut down before the work ran) by pushing nil,
 * "unavailable".
 * - `free` releases the struct; the scheduler calls it exactly once, after `push` or when the work
 *   could not be started. */
#ifndef LH_SCHEDULER_H
#define LH_SCHEDULER_H

#include <lua.h>
#include "jobs.h"

typedef struct lh_task_s lh_task_t;
typedef struct lh_ljob_s lh_ljob_t;

typedef int (*lh_ljob_push_cb)(lh_ljob_t *lj, lua_State *co);
typedef void (*lh_ljob_free_cb)(lh_ljob_t *lj);

struct lh_ljob_s {
  lh_job_t job; /* the binding sets job.work; the scheduler sets job.done */
  lh_ljob_push_cb push;
  lh_ljob_free_cb free;
  lh_task_t *task; /* private */
};

/* A task is one request's coroutine, owned by the VM that created it. */
struct lh_task_s {
  lua_State *co;
  uv_loop_t *loop;
  lh_cq_t *cq;
  /* Called on the loop thread with `nargs` values pushed on `co`: the owner resumes the coroutine.
   */
  void (*resume)(lh_task_t *task, int nargs);
  int suspended; /* 1 while waiting for a job or a timer */
};

/* The VM marks which task is running on this thread around every lua_resume. */
void lh_sched_set_current(lh_task_t *task);
lh_task_t *lh_sched_current(void);

/* `return lh_sched_await(L, "db", lj);` from a lua_CFunction. Yields on success.
 * Queue full: frees lj and returns 2 (nil, "overloaded") without yielding.
 * Pool closed: frees lj and returns 2 (nil, "unavailable").
 * Not inside a request's own coroutine (load time, a nested coroutine): frees lj and raises. */
int lh_sched_await(lua_State *L, const char *pool, lh_ljob_t *lj);

/* Pool jobs submitted from this thread whose completion has not arrived yet. Shutdown must wait
 * for these (their completion targets this loop) but need not wait for sleeping coroutines. */
int lh_sched_jobs_in_flight(void);

/* Shutdown, grace period over: wakes every coroutine sleeping on this thread now, and makes later
 * sleeps on this thread fail with "shutting down", so requests finish instead of being dropped. */
void lh_sched_cancel_sleeps(void);

/* luahost.sleep(ms): a loop timer; returns nothing to the script. */
int lh_sched_sleep(lua_State *L, double ms);

#endif
