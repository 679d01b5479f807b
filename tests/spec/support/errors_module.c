/* errors_module.c: turns the host's luahost.errors into a loadable Lua C module,
 * build/lua/luahost/errors.so, so busted specs test the real implementation (see json_module.c for
 * why the entry point is referenced here). */
#include <lua.h>

#include "lua_api.h"

lua_CFunction lh_errors_module_entry = luaopen_luahost_errors;
