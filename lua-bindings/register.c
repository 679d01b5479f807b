/* register.c: the module registry (see register.h). Adding a binding means writing its files and
 * adding one entry to `builtin` below; the VM, the loader, main.c and the API-document test all
 * read this list. */
#include "register.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "jwt.h"
#include "lh.h"
#include "lua_api.h"
#include "mongo.h"
#include "password.h"
#include "unicode.h"

static const lh_module_t builtin[] = {
    /* the host's own modules */
    {"luahost", lh_lua_core_open, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.log", lh_lua_log_open, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.metrics", lh_lua_metrics_open, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.json", luaopen_luahost_json, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.ratelimit", luaopen_luahost_ratelimit, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.admin", lh_lua_admin_open, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.errors", luaopen_luahost_errors, NULL, NULL, 0, NULL},
    {"luahost.pattern", luaopen_luahost_pattern, NULL, NULL, 0, NULL},
    {"luahost.response", NULL, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.validate", NULL, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
    {"luahost.loader", NULL, NULL, NULL, 0, NULL},
    {"luahost.runtime", NULL, NULL, NULL, 0, NULL},
    {"luahost.policy_tests", NULL, NULL, NULL, 0, NULL},
    /* native bindings */
    {"luahost.password", luaopen_luahost_password, lh_password_init, lh_password_cleanup,
     LH_MODULE_SCRIPTS, NULL},
    {"luahost.jwt", luaopen_luahost_jwt, lh_jwt_init, lh_jwt_cleanup, LH_MODULE_SCRIPTS,
     lh_jwt_reload},
    {"luahost.mongo", luaopen_luahost_mongo, lh_mongo_init, lh_mongo_cleanup, LH_MODULE_SCRIPTS,
     NULL},
    {"luahost.unicode", luaopen_luahost_unicode, NULL, NULL, LH_MODULE_SCRIPTS, NULL},
};

#define LH_MAX_EXTRA_MODULES 4
#define LH_MAX_MODULES (LH_ARRAY_SIZE(builtin) + LH_MAX_EXTRA_MODULES)

static const lh_module_t *extra[LH_MAX_EXTRA_MODULES];
static size_t nextra;
static const lh_module_t *all[LH_MAX_MODULES + 1];
static size_t ninit; /* modules whose init ran, for cleanup */

extern const struct lh_embedded_s {
  const char *name, *chunkname, *src;
  size_t len;
} lh_embedded_modules[];

const lh_module_t *const *lh_modules_list(void) {
  size_t n = 0;
  for (size_t i = 0; i < LH_ARRAY_SIZE(builtin); i++)
    all[n++] = &builtin[i];
  for (size_t i = 0; i < nextra; i++)
    all[n++] = extra[i];
  all[n] = NULL;
  return all;
}

const lh_module_t *lh_modules_find(const char *name) {
  for (const lh_module_t *const *m = lh_modules_list(); *m; m++)
    if (strcmp((*m)->name, name) == 0)
      return *m;
  return NULL;
}

int lh_modules_add(const lh_module_t *m) {
  if (lh_modules_find(m->name))
    return LH_EINVAL;
  if (nextra == LH_MAX_EXTRA_MODULES)
    return LH_ELIMIT;
  extra[nextra++] = m;
  return 0;
}

int lh_modules_init(const lh_config_t *cfg, char *err, size_t errlen) {
  const lh_module_t *const *mods = lh_modules_list();
  ninit = 0;
  for (size_t i = 0; mods[i]; i++) {
    if (mods[i]->init) {
      int rc = mods[i]->init(cfg, err, errlen);
      if (rc != 0) {
        lh_modules_cleanup();
        return rc;
      }
    }
    ninit = i + 1;
  }
  return 0;
}

int lh_modules_reload(const lh_config_t *cfg, int apply, char *err, size_t errlen) {
  for (const lh_module_t *const *m = lh_modules_list(); *m; m++) {
    int rc = (*m)->reload ? (*m)->reload(cfg, apply, err, errlen) : 0;
    if (rc != 0)
      return rc;
  }
  return 0;
}

void lh_modules_cleanup(void) {
  const lh_module_t *const *mods = lh_modules_list();
  while (ninit > 0) {
    ninit--;
    if (mods[ninit]->cleanup)
      mods[ninit]->cleanup();
  }
}

static const struct lh_embedded_s *embedded(const char *name) {
  for (const struct lh_embedded_s *e = lh_embedded_modules; e->name; e++)
    if (strcmp(e->name, name) == 0)
      return e;
  return NULL;
}

int lh_modules_preload(lua_State *L, char *err, size_t errlen) {
  lua_getfield(L, LUA_GLOBALSINDEX, "package");
  lua_getfield(L, -1, "preload"); /* package, preload */
  for (const lh_module_t *const *m = lh_modules_list(); *m; m++) {
    if ((*m)->luaopen) {
      lua_pushcfunction(L, (*m)->luaopen);
    } else {
      const struct lh_embedded_s *e = embedded((*m)->name);
      if (!e) {
        lh_errf(err, errlen, "module %s: no embedded source", (*m)->name);
        lua_pop(L, 2);
        return LH_EINVAL;
      }
      if (luaL_loadbuffer(L, e->src, e->len, e->chunkname) != 0) {
        lh_errf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 3);
        return LH_EINVAL;
      }
    }
    lua_setfield(L, -2, (*m)->name);
  }
  lua_pop(L, 2);
  return 0;
}

void lh_modules_push_script_names(lua_State *L) {
  lua_newtable(L);
  for (const lh_module_t *const *m = lh_modules_list(); *m; m++) {
    if ((*m)->flags & LH_MODULE_SCRIPTS) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, (*m)->name);
    }
  }
}
