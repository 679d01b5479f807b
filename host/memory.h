/* memory.h: the script memory ceiling. Each Lua state is created with this allocator: it counts
 * the bytes the state holds and, while a task runs (between lh_memory_arm and lh_memory_disarm),
 * refuses an allocation that would take the state past its ceiling or the running task past its
 * share. A refused allocation raises LuaJIT's memory error in the script; the allocator also
 * expires the task's time budget (budget.h), so a script that catches the error with pcall fails
 * at its next instruction. While a task runs, allocations also check its deadline: a C function
 * that builds a large result in one call (string.rep, table.concat, string.format, gsub) fails when
 * its time is up instead of running on where the count hook cannot see it.
 *
 * Outside a task nothing is refused: the host's own C code pushes values without a protected
 * call, and an allocation failure there would end the process. */
#ifndef LH_MEMORY_H
#define LH_MEMORY_H

#include <lua.h>
#include <stddef.h>

#include "budget.h"

typedef struct {
  size_t used;         /* bytes the state holds */
  size_t state_limit;  /* ceiling of the state; 0 = none */
  size_t task_limit;   /* share of one task; 0 = none */
  long long task_used; /* net bytes the running task allocated (frees of older data count too) */
  int armed;           /* a task is running */
  int exceeded;        /* the running task went past a limit; cleared by lh_memory_arm */
  unsigned ticks;      /* allocations since the last deadline check */
  lh_budget_t *budget; /* the state's time budget, expired on a refusal */
  lua_State *L;        /* the state, once created */
} lh_memory_t;

/* Creates a state whose allocations m accounts; m and budget must outlive it. */
lua_State *lh_memory_newstate(lh_memory_t *m, lh_budget_t *budget, size_t state_limit);
/* Arms the limits for a task that already used `task_used` bytes, before resuming it, with a share
 * of task_limit bytes (0 = none; read per run, so a reload can change it). */
void lh_memory_arm(lh_memory_t *m, long long task_used, size_t task_limit);
/* Disarms them after the task returned or yielded; returns what the task has used so far. */
long long lh_memory_disarm(lh_memory_t *m);

#endif
