/* http_lua.c: the `luahost.http` module: the host's HTTP contracts as scripts see them, read from
 * their one C owner (router.c) so that the script loader never keeps a copy:
 *   http.methods            {"GET", "HEAD", ...}: the methods a route may declare
 *   http.is_method(s)       true when s is one of them (case-sensitive, as in HTTP)
 *   http.reserved_paths     {"/healthz", "/readyz", "/metrics", "/admin"}
 *   http.is_reserved(path)  true when a route on path would collide with a reserved path (the path
 *                           itself or anything below it) */
#include "http_lua.h"

#include <lauxlib.h>

#include "router.h"

static int l_is_method(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, lh_method_parse(s, len) >= 0);
  return 1;
}

static int l_is_reserved(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, lh_reserved_for_routes(s, len) >= 0);
  return 1;
}

int luaopen_luahost_http(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_createtable(L, LH_M__COUNT, 0);
  for (int m = 0; m < LH_M__COUNT; m++) {
    lua_pushstring(L, lh_method_name((lh_method_t)m));
    lua_rawseti(L, -2, m + 1);
  }
  lua_setfield(L, -2, "methods");
  lua_createtable(L, LH_RESERVED__COUNT, 0);
  for (int r = 0; r < LH_RESERVED__COUNT; r++) {
    lua_pushstring(L, lh_reserved_path_name((lh_reserved_t)r, NULL));
    lua_rawseti(L, -2, r + 1);
  }
  lua_setfield(L, -2, "reserved_paths");
  lua_pushcfunction(L, l_is_method);
  lua_setfield(L, -2, "is_method");
  lua_pushcfunction(L, l_is_reserved);
  lua_setfield(L, -2, "is_reserved");
  return 1;
}
