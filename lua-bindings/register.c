/* register.c: process-wide set-up of the native bindings and their `require` names. Kept apart
 * from the bindings so that adding one touches this file and the binding, nothing else. */
#include "register.h"

#include <lauxlib.h>
#include <stdio.h>

#include "jwt.h"
#include "mongo.h"
#include "password.h"
#include "unicode.h"

int lh_bindings_init(const lh_config_t *cfg, char *err, size_t errlen) {
  int rc = lh_password_init(cfg, err, errlen);
  if (rc == 0)
    rc = lh_jwt_init(cfg, err, errlen);
  if (rc == 0)
    rc = lh_mongo_init(cfg, err, errlen);
  if (rc != 0)
    lh_bindings_cleanup();
  return rc;
}

void lh_bindings_cleanup(void) {
  lh_mongo_cleanup();
  lh_jwt_cleanup();
  lh_password_cleanup();
}

void lh_bindings_preload(lua_State *L) {
  static const luaL_Reg mods[] = {{"luahost.mongo", luaopen_luahost_mongo},
                                  {"luahost.password", luaopen_luahost_password},
                                  {"luahost.jwt", luaopen_luahost_jwt},
                                  {"luahost.unicode", luaopen_luahost_unicode},
                                  {NULL, NULL}};
  lua_getfield(L, LUA_GLOBALSINDEX, "package");
  lua_getfield(L, -1, "preload");
  for (const luaL_Reg *m = mods; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
}
