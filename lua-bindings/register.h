/* register.h: the module registry, the one list of every Lua module the host provides: the host's
 * own (`luahost`, `luahost.log`, `luahost.json`, ...), the embedded Lua ones (host/lua/) and the
 * native bindings (`luahost.mongo`, `luahost.password`, `luahost.jwt`). Each entry names the
 * module, how to open it in a Lua state, and its process-wide set-up and tear-down. The VM preloads
 * every entry, the loader lets scripts require the entries marked LH_MODULE_SCRIPTS, main.c runs
 * the init and cleanup hooks, and docs/lua-api.md documents what they export (a test checks it). */
#ifndef LH_REGISTER_H
#define LH_REGISTER_H

#include <lua.h>
#include <stddef.h>
#include "config.h"

enum {
  LH_MODULE_SCRIPTS = 1 /* scripts may `require` it (else only the host's own Lua uses it) */
};

typedef struct lh_module_s {
  const char *name;      /* the `require` name */
  lua_CFunction luaopen; /* NULL: the embedded host/lua/ module of that name */
  /* Once per process, before any worker starts; NULL when there is nothing to set up. On failure
   * returns a negative LH_E* code and names the cause in err. */
  int (*init)(const lh_config_t *cfg, char *err, size_t errlen);
  void (*cleanup)(void); /* undoes init; NULL when init is NULL */
  unsigned flags;        /* LH_MODULE_* */
  /* A live reload's new configuration (reload.h): apply == 0 checks it, apply == 1 (after every
   * check of the candidate passed) makes it live and cannot fail. NULL: nothing to reload. */
  int (*reload)(const lh_config_t *cfg, int apply, char *err, size_t errlen);
} lh_module_t;

/* Adds a module to the registry (the test host adds its test-only module this way); before
 * lh_modules_init, from the main thread. LH_ELIMIT past a few extra modules, LH_EINVAL for a name
 * already registered. */
int lh_modules_add(const lh_module_t *m);
/* Every registered module, in registry order; NULL-terminated. */
const lh_module_t *const *lh_modules_list(void);
const lh_module_t *lh_modules_find(const char *name);
/* Runs every init in order; when one fails, cleans up those that succeeded. */
int lh_modules_init(const lh_config_t *cfg, char *err, size_t errlen);
/* Runs every module's reload hook with apply (see lh_module_t); stops at the first failure. */
int lh_modules_reload(const lh_config_t *cfg, int apply, char *err, size_t errlen);
/* Runs every cleanup, in reverse order. */
void lh_modules_cleanup(void);
/* Puts every module into package.preload of L. On failure (a broken embedded source) names the
 * cause in err and returns LH_EINVAL. */
int lh_modules_preload(lua_State *L, char *err, size_t errlen);
/* Pushes a table { [name] = true } of the modules scripts may require. */
void lh_modules_push_script_names(lua_State *L);

#endif
