/* http_lua.h: the `luahost.http` module (methods and reserved paths, see http_lua.c). */
#ifndef LH_HTTP_LUA_H
#define LH_HTTP_LUA_H

#include <lua.h>

int luaopen_luahost_http(lua_State *L);

#endif
