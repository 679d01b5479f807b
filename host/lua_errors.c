/* lua_errors.c: the internal module `luahost.errors`, the error kinds of host/response.c seen from
 * Lua. luahost.response builds status_for and retryable on it; scripts do not require it. */
#include <lauxlib.h>

#include "lua_api.h"
#include "response.h"

/* kind(name) -> status, code, message, retry_after_s (0: none) | nil */
static int l_kind(lua_State *L) {
  const lh_error_kind_t *k =
      lua_type(L, 1) == LUA_TSTRING ? lh_error_kind(lua_tostring(L, 1)) : NULL;
  if (!k) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushinteger(L, k->status);
  lua_pushstring(L, k->code);
  lua_pushstring(L, k->message);
  lua_pushinteger(L, k->retry_after);
  return 4;
}

int luaopen_luahost_errors(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_kind);
  lua_setfield(L, -2, "kind");
  return 1;
}
