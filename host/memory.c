/* memory.c: the script memory ceiling (see memory.h). */
#include "memory.h"

#include <stdlib.h>

#include "lh.h"
#include "log.h"

/* Allocations between two deadline checks, and the size from which every one is checked: a clock
 * read costs tens of nanoseconds, a large allocation is followed by as many bytes of work. */
#define LH_MEMORY_CHECK_EVERY 64
#define LH_MEMORY_CHECK_SIZE 65536

static int refuse(lh_memory_t *m, int memory) {
  if (memory)
    m->exceeded = 1;
  lh_budget_expire(m->budget, m->L, memory);
  return 1;
}

/* Whether the running task may grow by `grow` bytes of a `nsize` allocation. */
static int refused(lh_memory_t *m, size_t grow, size_t nsize) {
  if (m->exceeded)
    return 1;
  if (m->task_limit && m->task_used + (long long)grow > (long long)m->task_limit)
    return refuse(m, 1);
  if (m->state_limit && m->used + grow > m->state_limit)
    return refuse(m, 1);
  /* Once the budget has fired, the hook fails the script: its error message must still fit. */
  if ((++m->ticks >= LH_MEMORY_CHECK_EVERY || nsize >= LH_MEMORY_CHECK_SIZE) &&
      m->budget->deadline_ns && !m->budget->exceeded) {
    m->ticks = 0;
    if (lh_now_ns() >= m->budget->deadline_ns)
      return refuse(m, 0);
  }
  return 0;
}

static void *lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lh_memory_t *m = ud;
  if (!ptr)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    m->used -= osize;
    if (m->armed)
      m->task_used -= (long long)osize;
    return NULL;
  }
  if (m->armed && nsize > osize && refused(m, nsize - osize, nsize))
    return NULL;
  void *p = realloc(ptr, nsize);
  if (!p)
    return NULL; /* the old block, if any, is untouched and still counted */
  m->used = m->used - osize + nsize;
  if (m->armed)
    m->task_used += (long long)nsize - (long long)osize;
  return p;
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  lh_error("Lua panic: %s", msg ? msg : "(error object is not a string)");
  return 0;
}

lua_State *lh_memory_newstate(lh_memory_t *m, lh_budget_t *budget, size_t state_limit) {
  m->used = 0;
  m->state_limit = state_limit;
  m->task_limit = 0;
  m->task_used = 0;
  m->armed = m->exceeded = 0;
  m->ticks = 0;
  m->budget = budget;
  m->L = lua_newstate(lh_alloc, m);
  if (m->L)
    lua_atpanic(m->L, panic);
  return m->L;
}

void lh_memory_arm(lh_memory_t *m, long long task_used, size_t task_limit) {
  m->task_used = task_used;
  m->task_limit = task_limit;
  m->exceeded = 0;
  m->ticks = 0;
  m->armed = 1;
}

long long lh_memory_disarm(lh_memory_t *m) {
  m->armed = 0;
  return m->task_used;
}
