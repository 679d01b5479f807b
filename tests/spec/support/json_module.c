/* json_module.c: turns the host's JSON code into a loadable Lua C module,
 * build/lua/luahost/json.so, so busted specs `require "luahost.json"` and test the real
 * implementation.
 *
 * luaopen_luahost_json lives in host/json.c inside the static lh_core library. A linker only
 * pulls an archive member in when something references it, so this file takes the address of the
 * entry point: that reference brings json.o (and what it needs) into the module and keeps the
 * symbol exported from it. */
#include <lua.h>

#include "json.h"

/* Referenced so the linker keeps json.o; exported so it is not optimised away either. */
lua_CFunction lh_json_module_entry = luaopen_luahost_json;
