/* budget.h: the script time budget. A count hook, installed once per Lua state (hooks are per
 * state in LuaJIT, not per coroutine), checks the deadline of the script running right now and
 * fails it when the deadline has passed; between runs no deadline is armed. The hook finds its
 * budget through the state's registry, so nothing here is thread-local.
 *
 * Only interpreted code can be stopped: LuaJIT runs no count hook inside compiled traces, which
 * is why scripts run with the JIT off unless the operator turns it on (README, "Benchmarks"). */
#ifndef LH_BUDGET_H
#define LH_BUDGET_H

#include <lua.h>

typedef struct {
  unsigned long long deadline_ns; /* 0 when no script is running */
  int exceeded;                   /* the running script overran; cleared by lh_budget_arm */
  int interval;                   /* VM instructions between checks */
  int budget_ms;                  /* for the error message */
  int memory;                     /* expired by the memory ceiling (memory.h), not the clock */
} lh_budget_t;

/* Installs the hook on L; b must outlive L. */
void lh_budget_install(lua_State *L, lh_budget_t *b, int interval, int budget_ms);
/* Arms a deadline budget_ns from now, before resuming script code. */
void lh_budget_arm(lh_budget_t *b, unsigned long long budget_ns);
/* Disarms it after the script returned or yielded; restores the hook interval if it overran. */
void lh_budget_disarm(lh_budget_t *b, lua_State *L);

/* Wraps the string and table functions that can do large work in one call (string.rep, format,
 * gsub, find, table.concat, sort, ...): after a call that read or built a large value, the
 * deadline is checked, and a script past it fails at its next instruction. Install after the
 * pattern guard (pattern.h), before scripts copy the libraries. */
void lh_budget_guard_install(lua_State *L);
/* Ends the running script's time now (a C function overran, or it passed its memory share): its
 * next instruction fails, and so does every one after it until lh_budget_disarm. No-op when no
 * script runs. Safe to call from the allocator: it only sets fields and the hook. */
void lh_budget_expire(lh_budget_t *b, lua_State *L, int memory);

#endif
