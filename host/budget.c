/* budget.c: the script time budget (see budget.h). */
#include "budget.h"

#include <lauxlib.h>

#include "lh.h"

static const char budget_key = 'b'; /* registry key: its address */

static lh_budget_t *budget_of(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&budget_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lh_budget_t *b = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return b;
}

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lh_budget_t *b = budget_of(L);
  if (!b || !b->deadline_ns || lh_now_ns() < b->deadline_ns)
    return;
  /* From now on every instruction fails, so a script that catches the error with pcall cannot keep
   * running: each enclosing frame fails in turn until the coroutine is dead. */
  b->exceeded = 1;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  if (b->memory)
    luaL_error(L, "script_memory_exceeded: the script used more memory than its share");
  luaL_error(L, "script_budget_exceeded: the script ran longer than %d ms", b->budget_ms);
}

void lh_budget_install(lua_State *L, lh_budget_t *b, int interval, int budget_ms) {
  b->deadline_ns = 0;
  b->exceeded = 0;
  b->interval = interval;
  b->budget_ms = budget_ms;
  lua_pushlightuserdata(L, (void *)&budget_key);
  lua_pushlightuserdata(L, b);
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, interval);
}

void lh_budget_arm(lh_budget_t *b, unsigned long long budget_ns) {
  b->exceeded = 0;
  b->memory = 0;
  b->deadline_ns = lh_now_ns() + budget_ns;
}

void lh_budget_disarm(lh_budget_t *b, lua_State *L) {
  b->deadline_ns = 0;
  if (b->exceeded)
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, b->interval);
}

void lh_budget_expire(lh_budget_t *b, lua_State *L, int memory) {
  if (!b->deadline_ns)
    return;
  b->deadline_ns = 1; /* long past: the hook fails the script at its next instruction */
  b->exceeded = 1;
  b->memory = memory;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
}
