/* scheduler.h: suspends a request's coroutine while blocking work runs on a pool or a timer runs,
 * and resumes it on its own loop when that is done. The one place where coroutines are parked and
 * woken.
 *
 * Shape of a yielding binding (as in lua-nginx-module): check the arguments, allocate a struct that
 * embeds an lh_ljob_t, fill in `job.work`, `push` and `free`, then `return lh_sched_await(L, "db",
 * lj)`.
 * - `job.work` runs on a pool thread: only plain C, never the lua_State.
 * - `push` runs on the loop thread and pushes the results onto the coroutine (`co`); it must also
 *   handle `lj->job.cancelled` (the pool shut down before the work ran) by pushing nil,
 * "unavailable".
 * - `free` releases the struct; the scheduler calls it exactly once, after `push` or when the work
 *   could not be started.
 *
 * Every Lua state that runs tasks has one lh_sched_t, attached to the state's registry, so a
 * binding finds the running task from its lua_State alone. Each suspended task has a cleanup slot
 * (lua-nginx-module's `coctx->cleanup`): what cancels the wait (a sleep's timer), or NULL when the
 * wait cannot be cancelled and always completes (a pool job: the pool delivers it, cancelled if
 * need be). At shutdown lh_sched_cancel runs every cleanup, so no task waits for a timer. */
#ifndef LH_SCHEDULER_H
#define LH_SCHEDULER_H

#include <lua.h>
#include "jobs.h"

typedef struct lh_task_s lh_task_t;
typedef struct lh_ljob_s lh_ljob_t;
typedef struct lh_sched_s lh_sched_t;

typedef int (*lh_ljob_push_cb)(lh_ljob_t *lj, lua_State *co);
typedef void (*lh_ljob_free_cb)(lh_ljob_t *lj);

struct lh_ljob_s {
  lh_job_t job; /* the binding sets job.work; the scheduler sets job.done */
  lh_ljob_push_cb push;
  lh_ljob_free_cb free;
  lh_task_t *task; /* private */
};

/* A task is one request's (or hook's) coroutine, owned by the VM that created it. */
struct lh_task_s {
  lua_State *co;
  uv_loop_t *loop;
  lh_cq_t *cq;
  lh_sched_t *sched;
  /* Called on the loop thread with `nargs` values pushed on `co`: the owner resumes the coroutine.
   */
  void (*resume)(lh_task_t *task, int nargs);
  int suspended; /* 1 while waiting for a job or a timer */
  /* While suspended: cancels the wait and resumes the task (NULL: the wait cannot be cancelled). */
  void (*cleanup)(lh_task_t *task);
  void *cleanup_data;
  lh_task_t *prev, *next; /* the scheduler's suspended tasks */
};

struct lh_sched_s {
  lh_task_t *running;   /* inside lua_resume right now, or NULL */
  lh_task_t *suspended; /* every suspended task */
  int nsuspended;
  int cancelled; /* lh_sched_cancel ran: waits that can be cancelled now fail at once */
};

/* Stores s in L's registry (s must outlive L). */
void lh_sched_attach(lua_State *L, lh_sched_t *s);
/* The scheduler of L's state, or NULL (a state without one, e.g. a busted spec). */
lh_sched_t *lh_sched_of(lua_State *L);
/* The task owner marks the running task around every lua_resume. */
void lh_sched_enter(lh_sched_t *s, lh_task_t *t);
void lh_sched_leave(lh_sched_t *s);

/* `return lh_sched_await(L, "db", lj);` from a lua_CFunction. Yields on success.
 * Queue full: frees lj and returns 2 (nil, "overloaded") without yielding.
 * Pool closed or missing, or the scheduler cancelled: frees lj and returns 2 (nil,
 * "unavailable").
 * Not inside a request's own coroutine (load time, a nested coroutine): frees lj and raises. */
int lh_sched_await(lua_State *L, const char *pool, lh_ljob_t *lj);

/* luahost.sleep(ms): a loop timer; returns nothing to the script. After lh_sched_cancel it raises
 * "the server is shutting down". */
int lh_sched_sleep(lua_State *L, double ms);

/* Shutdown, grace period over: runs every suspended task's cleanup (sleepers wake now) and makes
 * later cancellable waits fail, so requests finish instead of being dropped. */
void lh_sched_cancel(lh_sched_t *s);

#endif
