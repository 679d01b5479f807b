/* lua_metrics.c: the `luahost.metrics` module: scripts declare their own counters, which /metrics
 * shows as luahost_<name> (metrics.c keeps them, process-wide, shared by every worker and every
 * generation). counter(name, help) returns an object whose :inc(n) adds to the counter.
 * docs/lua-api.md documents the API. */
#include <lauxlib.h>
#include <math.h>

#include "lh.h"
#include "lua_api.h"
#include "metrics.h"

#define COUNTER_MT "luahost.metrics.counter"

static int l_counter(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *help = luaL_optstring(L, 2, "");
  char err[256];
  int idx = lh_metrics_counter(name, help, err, sizeof(err));
  if (idx < 0)
    return luaL_error(L, "luahost.metrics.counter: %s", err);
  int *ud = lua_newuserdata(L, sizeof(int));
  *ud = idx;
  luaL_getmetatable(L, COUNTER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_inc(lua_State *L) {
  const int *ud = luaL_checkudata(L, 1, COUNTER_MT);
  lua_Number n = luaL_optnumber(L, 2, 1);
  luaL_argcheck(L, n >= 0 && n <= (lua_Number)LH_MAX_SAFE_INT && floor(n) == n, 2,
                "a whole number from 0 to 2^53-1 expected");
  lh_metrics_counter_add(*ud, (unsigned long long)n);
  return 0;
}

static int l_tostring(lua_State *L) {
  luaL_checkudata(L, 1, COUNTER_MT);
  lua_pushliteral(L, "luahost.metrics counter");
  return 1;
}

int lh_lua_metrics_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"inc", l_inc}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"counter", l_counter}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", l_tostring}, {NULL, NULL}};
  lh_lua_class(L, COUNTER_MT, methods, meta);
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
