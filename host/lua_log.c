/* lua_log.c: the `luahost.log` module: debug, info, warn and error write one line to the host's
 * log at that level; arguments are joined with spaces (non-strings by their type name). Warnings
 * and errors carry the calling script's file and line. */
#include <lauxlib.h>

#include "log.h"
#include "lua_api.h"

static int log_at(lua_State *L, lh_log_level_t level) {
  if (level < lh_log_get_level())
    return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, ' ');
    size_t len;
    const char *s = lua_isstring(L, i) ? lua_tolstring(L, i, &len) : NULL;
    if (s)
      luaL_addlstring(&b, s, len);
    else
      luaL_addstring(&b, lua_isnil(L, i) ? "nil" : luaL_typename(L, i));
  }
  luaL_pushresult(&b);
  /* Warnings and errors name the script line that logged them. */
  lua_Debug ar;
  if (level >= LH_LOG_WARN && lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) &&
      ar.currentline > 0)
    lh_log_at(level, ar.short_src, ar.currentline, "%s", lua_tostring(L, -1));
  else
    lh_log(level, "%s", lua_tostring(L, -1));
  return 0;
}

static int l_debug(lua_State *L) {
  return log_at(L, LH_LOG_DEBUG);
}
static int l_info(lua_State *L) {
  return log_at(L, LH_LOG_INFO);
}
static int l_warn(lua_State *L) {
  return log_at(L, LH_LOG_WARN);
}
static int l_error(lua_State *L) {
  return log_at(L, LH_LOG_ERROR);
}

int lh_lua_log_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
