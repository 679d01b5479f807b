/* lua_class.c: the one way the host's C modules make the metatable of their userdata (see
 * lua_api.h). */
#include <lauxlib.h>

#include "lua_api.h"

void lh_lua_class(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
  if (!luaL_newmetatable(L, name)) { /* [mt] */
    lua_pop(L, 1);
    return; /* made by an earlier call in this state */
  }
  if (methods) {
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
  }
  for (const luaL_Reg *m = meta; m && m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pushboolean(L, 0); /* getmetatable() gives false: a script cannot reach the methods */
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}
