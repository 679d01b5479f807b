/* register.h: the one place that knows every native binding: process-wide set-up and tear-down
 * (database client pool, secrets, hashing parameters) and the `require` names scripts use. */
#ifndef LH_REGISTER_H
#define LH_REGISTER_H

#include <lua.h>
#include <stddef.h>
#include "config.h"

/* Once per process, before any worker starts. On failure err names the cause. */
int lh_bindings_init(const lh_config_t *cfg, char *err, size_t errlen);
void lh_bindings_cleanup(void);
/* Registers luahost.mongo, luahost.password, luahost.jwt and luahost.unicode in package.preload
 * of L. */
void lh_bindings_preload(lua_State *L);

#endif
