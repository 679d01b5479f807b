/* router_module.c: turns the host's luahost.router (host/lua_router.c over host/router.c) into a
 * loadable Lua C module, build/lua/luahost/router.so, so busted specs route policy tests through
 * the real router (see json_module.c for why the entry point is referenced here). */
#include <lua.h>

#include "lua_api.h"

lua_CFunction lh_router_module_entry = luaopen_luahost_router;
