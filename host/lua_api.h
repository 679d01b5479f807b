/* lua_api.h: the luaopen functions of the host's own C modules, one file each (as
 * lua-nginx-module has one file per Lua API): lua_core.c (`luahost`), lua_log.c (`luahost.log`),
 * lua_errors.c (the internal `luahost.errors`, read by luahost.response), lua_router.c (the
 * router for the policy-test runner). The registry in
 * lua-bindings/register.c lists them with every other module. */
#ifndef LH_LUA_API_H
#define LH_LUA_API_H

#include <lua.h>

#include "json.h"
#include "pattern.h"
#include "ratelimit.h"

/* lua_class.c: creates, once per state, the metatable `name` of a host userdata: `methods` (or
 * NULL) as its __index, the metamethods in `meta` (or NULL), and __metatable = false, so a
 * sandboxed script cannot swap the methods of host values. Leaves the stack as it was. */
#include <lauxlib.h>
void lh_lua_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

int lh_lua_core_open(lua_State *L);
int lh_lua_log_open(lua_State *L);
int lh_lua_admin_open(lua_State *L);   /* lua_admin.c: `luahost.admin` */
int lh_lua_metrics_open(lua_State *L); /* lua_metrics.c: `luahost.metrics` */
int luaopen_luahost_errors(lua_State *L);

/* lua_router.c: the router as the host's Lua code sees it (the policy-test runner). */
#include "router.h"
int luaopen_luahost_router(lua_State *L);
/* Pushes a function match(method, path) -> id, params | nil, why over r (which must outlive it). */
void lh_lua_router_push_match(lua_State *L, const lh_router_t *r);
/* Pushes the table of m's path parameters, percent-decoded, as a handler gets them. */
void lh_lua_push_route_params(lua_State *L, const char *path, const lh_route_match_t *m);

#endif
