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

/* ---- C functions ---- */

/* Work a C function does in one call is about the size of the strings and tables it reads and
 * builds. From this size on, a call checks the clock when it returns. */
#define LH_BUDGET_BIG_BYTES 65536

static size_t value_size(lua_State *L, int i) {
  int t = lua_type(L, i);
  return t == LUA_TSTRING || t == LUA_TTABLE ? lua_objlen(L, i) * (t == LUA_TTABLE ? 8 : 1) : 0;
}

/* upvalues: the C function, its name. Calls it, and when it read or built a large value and the
 * running script's time is up, fails the script at its next instruction: a loop of such calls runs
 * few instructions, so the count hook alone would let it run for minutes. */
static int timed_call(lua_State *L) {
  int nargs = lua_gettop(L);
  size_t size = 0;
  for (int i = 1; i <= nargs; i++)
    size += value_size(L, i);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  if (lua_pcall(L, nargs, LUA_MULTRET, 0) != 0) {
    /* Called from C, the function cannot know its name: "bad argument #1 to '?'" gets it back. */
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushfstring(L, " to '%s'", lua_tostring(L, lua_upvalueindex(2)));
      luaL_gsub(L, lua_tostring(L, -2), " to '?'", lua_tostring(L, -1));
    }
    return lua_error(L);
  }
  int nres = lua_gettop(L);
  for (int i = 1; i <= nres && size < LH_BUDGET_BIG_BYTES; i++)
    size += value_size(L, i);
  if (size >= LH_BUDGET_BIG_BYTES) {
    lh_budget_t *b = budget_of(L);
    if (b && b->deadline_ns && !b->exceeded && lh_now_ns() >= b->deadline_ns)
      lh_budget_expire(b, L, 0);
  }
  return nres;
}

void lh_budget_guard_install(lua_State *L) {
  static const char *const lib[] = {"string", "table"};
  static const char *const names[2][13] = {
      {"rep", "format", "gsub", "find", "match", "gmatch", "upper", "lower", "reverse", "sub",
       "byte", "char", NULL},
      {"concat", "sort", "insert", "remove", NULL},
  };
  for (int l = 0; l < 2; l++) {
    lua_getglobal(L, lib[l]);
    for (int i = 0; names[l][i]; i++) {
      lua_getfield(L, -1, names[l][i]);
      lua_pushstring(L, names[l][i]);
      lua_pushcclosure(L, timed_call, 2);
      lua_setfield(L, -2, names[l][i]);
    }
    lua_pop(L, 1);
  }
}
