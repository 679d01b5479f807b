/* lua_api.h: the luaopen functions of the host's own C modules, one file each (as
 * lua-nginx-module has one file per Lua API): lua_core.c (`luahost`), lua_log.c (`luahost.log`),
 * lua_errors.c (the internal `luahost.errors`, read by luahost.response). The registry in
 * lua-bindings/register.c lists them with every other module. */
#ifndef LH_LUA_API_H
#define LH_LUA_API_H

#include <lua.h>

#include "json.h"
#include "pattern.h"
#include "ratelimit.h"

int lh_lua_core_open(lua_State *L);
int lh_lua_log_open(lua_State *L);
int luaopen_luahost_errors(lua_State *L);

#endif
