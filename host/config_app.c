/* config_app.c: the application's section of the configuration (see config_app.h). The host
 * gives its keys no meaning: it checks that the section is bounded data and keeps it as JSON for
 * the scripts (luahost.config.app). */
#include "config_app.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "lh.h"
#include "log.h"

/* Settings that were host options before the application got its own section. They keep working
 * under their old names, as a top-level key of the config file (deprecated: logged) and as
 * LUAHOST_<NAME>, and land in the application's section under the same key. */
typedef enum { LH_APP_STRING, LH_APP_NUMBER } lh_app_kind_t;
static const struct {
  const char *name;
  lh_app_kind_t kind;
} lh_legacy_app[] = {
    {"users_collection", LH_APP_STRING},   {"admin_username", LH_APP_STRING},
    {"admin_password", LH_APP_STRING},     {"admin_userage", LH_APP_NUMBER},
    {"login_max_per_pair", LH_APP_NUMBER}, {"login_max_per_user", LH_APP_NUMBER},
    {"login_max_per_addr", LH_APP_NUMBER}, {"login_window_s", LH_APP_NUMBER},
};

/* 1 for a top-level key of the application's section: [a-z][a-z0-9_]*, so that LUAHOST_APP_<KEY>
 * can name it. */
static int lh_app_key_ok(const char *k, size_t len) {
  if (len == 0 || len > LH_APP_MAX_KEY || !(k[0] >= 'a' && k[0] <= 'z'))
    return 0;
  for (size_t i = 1; i < len; i++)
    if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
      return 0;
  return 1;
}

/* Checks that the value at idx is data: strings (valid UTF-8), finite numbers, booleans and
 * tables of them with string or positive integer keys, within the depth and key bounds. The shape
 * of tables (a sequence or an object, not both) is checked by the JSON encoder after. */
static int lh_app_check(lua_State *L, int idx, int depth, int *nkeys, char *why, size_t whylen) {
  int t = lua_type(L, idx);
  if (t == LUA_TBOOLEAN)
    return 0;
  if (t == LUA_TNUMBER) {
    if (!isfinite(lua_tonumber(L, idx))) {
      lh_errf(why, whylen, "numbers must be finite");
      return LH_EINVAL;
    }
    return 0;
  }
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!lh_utf8_valid((const unsigned char *)s, len)) {
      lh_errf(why, whylen, "strings must be valid UTF-8");
      return LH_EINVAL;
    }
    return 0;
  }
  if (t != LUA_TTABLE) {
    lh_errf(why, whylen, "a %s is not data", lua_typename(L, t));
    return LH_EINVAL;
  }
  if (depth > LH_APP_MAX_DEPTH) {
    lh_errf(why, whylen, "nested deeper than %d levels", LH_APP_MAX_DEPTH);
    return LH_EINVAL;
  }
  if (!lua_checkstack(L, 4)) {
    lh_errf(why, whylen, "Lua stack exhausted");
    return LH_EINVAL;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (++*nkeys > LH_APP_MAX_KEYS) {
      lua_pop(L, 2);
      lh_errf(why, whylen, "more than %d keys", LH_APP_MAX_KEYS);
      return LH_EINVAL;
    }
    size_t klen = 0;
    const char *k = kt == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
    if (depth == 1 && !(k && lh_app_key_ok(k, klen))) {
      lua_pop(L, 2);
      lh_errf(why, whylen,
              "its keys must be names like admin_username ([a-z][a-z0-9_]*, at most "
              "%d bytes)",
              LH_APP_MAX_KEY);
      return LH_EINVAL;
    }
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      lua_pop(L, 2);
      lh_errf(why, whylen, "keys must be strings or list indexes");
      return LH_EINVAL;
    }
    int rc = lh_app_check(L, lua_gettop(L), depth + 1, nkeys, why, whylen);
    if (rc < 0) {
      char at[96];
      if (k) {
        snprintf(at, sizeof at, "'%.*s%s'", klen > 64 ? 64 : (int)klen, k, klen > 64 ? "..." : "");
      } else {
        snprintf(at, sizeof at, "%.17g", lua_tonumber(L, -2));
      }
      size_t n = strlen(why);
      snprintf(why + n, whylen - n, " (at key %s)", at);
      lua_pop(L, 2);
      return rc;
    }
    lua_pop(L, 1);
  }
  return 0;
}

int lh_config_app_store(lua_State *L, int idx, char *json, size_t jsonmax, const char *where,
                        char *err, size_t errlen) {
  char why[256];
  int nkeys = 0;
  if (lh_app_check(L, idx, 1, &nkeys, why, sizeof why) < 0) {
    lh_errf(err, errlen, "%s: %s", where, why);
    return LH_EINVAL;
  }
  lh_buf_t out;
  lh_buf_init(&out);
  int rc = lh_json_encode(L, idx, &out, why, sizeof why);
  if (rc == 0 && out.failed)
    rc = LH_ENOMEM;
  if (rc == 0 && out.len >= jsonmax) {
    lh_errf(why, sizeof why, "longer than %zu bytes as JSON", jsonmax - 1);
    rc = LH_ELIMIT;
  }
  if (rc == 0) {
    /* An empty table is encoded as {}: the section is always an object. */
    memcpy(json, out.data, out.len);
    json[out.len] = '\0';
  } else {
    lh_errf(err, errlen, "%s: %s", where, rc == LH_ENOMEM ? "out of memory" : why);
  }
  lh_buf_free(&out);
  return rc < 0 ? LH_EINVAL : 0;
}

/* Moves the legacy top-level keys of the file's table (at idx) into its `app` table, so they are
 * read like any other application setting. A key given both ways is an error. */
int lh_config_app_legacy(lua_State *L, int idx, const char *path, char *err, size_t errlen) {
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_legacy_app); i++) {
    const char *name = lh_legacy_app[i].name;
    lua_getfield(L, idx, name);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    lua_getfield(L, idx, "app");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, idx, "app");
    } else if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 2);
      continue; /* reading the section reports it */
    }
    lua_getfield(L, -1, name);
    int both = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (both) {
      lua_pop(L, 2);
      lh_errf(err, errlen, "%s: %s is given both at the top level and in app: keep app.%s", path,
              name, name);
      return LH_EINVAL;
    }
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, name); /* app[name] = value */
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_setfield(L, idx, name);
    lh_log(LH_LOG_WARN, "%s: the top-level option %s is deprecated: it is now app.%s", path, name,
           name);
  }
  return 0;
}

/* Sets app[key] from an environment variable's text. kind: the legacy key's type, or -1 for
 * LUAHOST_APP_<KEY>, which takes the type of the value the file gave that key (a string when it
 * gave none). The app table is on top of the stack. */
static int lh_app_env_set(lua_State *L, const char *key, int kind, const char *value,
                          const char *var, char *err, size_t errlen) {
  char got[96];
  size_t vlen = strlen(value);
  snprintf(got, sizeof got, "'%.*s%s'", vlen > 64 ? 64 : (int)vlen, value, vlen > 64 ? "..." : "");
  lua_getfield(L, -1, key);
  int t = lua_type(L, -1);
  lua_pop(L, 1);
  if (kind == LH_APP_NUMBER || (kind < 0 && t == LUA_TNUMBER)) {
    char *end = NULL;
    errno = 0;
    double d = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || isspace((unsigned char)*value) ||
        !isfinite(d)) {
      lh_errf(err, errlen, "%s: must be a number, got %s", var, got);
      return LH_EINVAL;
    }
    lua_pushnumber(L, d);
  } else if (kind < 0 && t == LUA_TBOOLEAN) {
    int b;
    if (lh_config_parse_bool(value, &b) < 0) {
      lh_errf(err, errlen, "%s: must be a boolean (true/false, 1/0, yes/no, on/off), got %s", var,
              got);
      return LH_EINVAL;
    }
    lua_pushboolean(L, b);
  } else if (kind < 0 && t == LUA_TTABLE) {
    lh_errf(err, errlen, "%s: app.%s is a table in the config file: set it there", var, key);
    return LH_EINVAL;
  } else {
    if (!lh_utf8_valid((const unsigned char *)value, strlen(value))) {
      lh_errf(err, errlen, "%s: must be valid UTF-8", var);
      return LH_EINVAL;
    }
    lua_pushstring(L, value);
  }
  lua_setfield(L, -2, key);
  return 0;
}

extern char **environ;

/* Applies the legacy variables, then LUAHOST_APP_<KEY>, to the application's section. */
int lh_config_app_env(char *json, size_t jsonmax, char *err, size_t errlen) {
  static const char prefix[] = "LUAHOST_APP_";
  int any = 0;
  char var[96];
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_legacy_app) && !any; i++) {
    snprintf(var, sizeof var, "LUAHOST_%s", lh_legacy_app[i].name);
    for (char *p = var; *p; p++)
      *p = (char)toupper((unsigned char)*p);
    any = getenv(var) != NULL;
  }
  for (char **e = environ; e && *e && !any; e++)
    any = strncmp(*e, prefix, sizeof prefix - 1) == 0;
  if (!any)
    return 0;
  lua_State *L = luaL_newstate();
  if (!L) {
    lh_errf(err, errlen, "app: cannot create a Lua state");
    return LH_ENOMEM;
  }
  char why[256];
  int rc = lh_json_decode(L, json, strlen(json), why, sizeof why);
  if (rc != 0)
    lh_errf(err, errlen, "app: %s", why);
  for (size_t i = 0; rc == 0 && i < LH_ARRAY_SIZE(lh_legacy_app); i++) {
    snprintf(var, sizeof var, "LUAHOST_%s", lh_legacy_app[i].name);
    for (char *p = var; *p; p++)
      *p = (char)toupper((unsigned char)*p);
    const char *value = getenv(var);
    if (value)
      rc = lh_app_env_set(L, lh_legacy_app[i].name, (int)lh_legacy_app[i].kind, value, var, err,
                          errlen);
  }
  for (char **e = environ; rc == 0 && e && *e; e++) {
    if (strncmp(*e, prefix, sizeof prefix - 1) != 0)
      continue;
    const char *eq = strchr(*e, '=');
    size_t klen = eq ? (size_t)(eq - *e) - (sizeof prefix - 1) : 0;
    char key[LH_APP_MAX_KEY + 1];
    int ok = eq && klen > 0 && klen <= LH_APP_MAX_KEY;
    for (size_t k = 0; ok && k < klen; k++)
      key[k] = (char)tolower((unsigned char)(*e)[sizeof prefix - 1 + k]);
    if (ok) {
      key[klen] = '\0';
      ok = lh_app_key_ok(key, klen);
    }
    snprintf(var, sizeof var, "%.*s", eq ? (int)(eq - *e) : 60, *e);
    if (!ok) {
      lh_errf(err, errlen, "%s: the key after LUAHOST_APP_ must be a name like ADMIN_USERNAME",
              var);
      rc = LH_EINVAL;
      break;
    }
    rc = lh_app_env_set(L, key, -1, eq + 1, var, err, errlen);
  }
  if (rc == 0)
    rc = lh_config_app_store(L, lua_gettop(L), json, jsonmax, "app (from the environment)", err,
                             errlen);
  lua_close(L);
  return rc < 0 ? LH_EINVAL : 0;
}
