/* unicode_module.c: turns the host's ICU binding into a loadable Lua C module,
 * build/lua/luahost/unicode.so, so busted specs `require "luahost.unicode"` and run the real
 * identity rules (see json_module.c for why the entry point is referenced). */
#include <lua.h>

#include "unicode.h"

/* Referenced so the linker keeps unicode.o; exported so it is not optimised away either. */
lua_CFunction lh_unicode_module_entry = luaopen_luahost_unicode;
