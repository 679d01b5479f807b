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
              "its keys must be names like max_items ([a-z][a-z0-9_]*, at most "
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

/* A top-level key of the file that names no host option, with a plain value (string, number,
 * boolean), is an application setting written where host options go: the form of settings that
 * were host options before the application got its own section. It moves into `app` with a
 * deprecation, so old files keep working while the host knows no application's names. Anything
 * else unknown, and a key within two edits of a host option (a typo such as `listn`), stays where
 * it is, for config.c to refuse as an unknown option. */
static int lh_app_adoptable(lua_State *L, int kidx, int vidx) {
  if (lua_type(L, kidx) != LUA_TSTRING)
    return 0;
  size_t len;
  const char *k = lua_tolstring(L, kidx, &len);
  int t = lua_type(L, vidx);
  return (t == LUA_TSTRING || t == LUA_TNUMBER || t == LUA_TBOOLEAN) && lh_app_key_ok(k, len) &&
         strcmp(k, "app") != 0 && !lh_config_is_option(k, len) && !lh_config_near_option(k, len);
}

int lh_config_app_adopt(lua_State *L, int idx, const char *path, char *err, size_t errlen) {
  /* Collect first: a table may not gain keys while lua_next walks it. */
  lua_newtable(L);
  int found = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lh_app_adoptable(L, -2, -1)) {
      lua_pushvalue(L, -2);
      lua_rawseti(L, found, ++n);
    }
    lua_pop(L, 1);
  }
  if (n > 0) {
    lua_getfield(L, idx, "app");
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, idx, "app");
    } else if (lua_type(L, -1) != LUA_TTABLE) {
      lua_pop(L, 2);
      return 0; /* reading the section reports it */
    }
  }
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, found, i);
    const char *name = lua_tostring(L, -1);
    lua_getfield(L, -2, name);
    int both = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (both) {
      lh_errf(err, errlen, "%s: %s is given both at the top level and in app: keep app.%s", path,
              name, name);
      lua_settop(L, found - 1);
      return LH_EINVAL;
    }
    lua_getfield(L, idx, name);
    lua_setfield(L, -3, name); /* app[name] = value */
    lua_pushnil(L);
    lua_setfield(L, idx, name);
    lh_log(LH_LOG_WARN,
           "%s: %s is no host option: it is read as app.%s (deprecated here: write it inside "
           "app = { ... })",
           path, name, name);
    lua_pop(L, 1);
  }
  lua_settop(L, found - 1);
  return 0;
}

/* Sets app[key] from an environment variable's text, which takes the type of the value the file
 * gave that key (a string when it gave none). The app table is on top of the stack. */
static int lh_app_env_set(lua_State *L, const char *key, const char *value, const char *var,
                          char *err, size_t errlen) {
  char got[96];
  size_t vlen = strlen(value);
  snprintf(got, sizeof got, "'%.*s%s'", vlen > 64 ? 64 : (int)vlen, value, vlen > 64 ? "..." : "");
  lua_getfield(L, -1, key);
  int t = lua_type(L, -1);
  lua_pop(L, 1);
  if (t == LUA_TNUMBER) {
    char *end = NULL;
    errno = 0;
    double d = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || isspace((unsigned char)*value) ||
        !isfinite(d)) {
      lh_errf(err, errlen, "%s: must be a number, got %s", var, got);
      return LH_EINVAL;
    }
    lua_pushnumber(L, d);
  } else if (t == LUA_TBOOLEAN) {
    int b;
    if (lh_config_parse_bool(value, &b) < 0) {
      lh_errf(err, errlen, "%s: must be a boolean (true/false, 1/0, yes/no, on/off), got %s", var,
              got);
      return LH_EINVAL;
    }
    lua_pushboolean(L, b);
  } else if (t == LUA_TTABLE) {
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

/* The app key an environment entry "LUAHOST_<NAME>=v" sets, lower-cased into key: 1 for
 * LUAHOST_APP_<KEY>, 2 for a LUAHOST_<NAME> that names no host option (the settings that were
 * host options before the application got its own section), 0 for anything else (the host's own
 * variables, other programs' ones). *bad is set when LUAHOST_APP_ is followed by no valid key. */
static int lh_app_env_key(const char *entry, char key[LH_APP_MAX_KEY + 1], int *bad) {
  static const char host[] = "LUAHOST_", app[] = "LUAHOST_APP_";
  *bad = 0;
  if (strncmp(entry, host, sizeof host - 1) != 0)
    return 0;
  int is_app = strncmp(entry, app, sizeof app - 1) == 0;
  const char *name = entry + (is_app ? sizeof app - 1 : sizeof host - 1);
  const char *eq = strchr(name, '=');
  size_t len = eq ? (size_t)(eq - name) : 0;
  int ok = eq && len > 0 && len <= LH_APP_MAX_KEY;
  for (size_t k = 0; ok && k < len; k++)
    key[k] = (char)tolower((unsigned char)name[k]);
  if (ok) {
    key[len] = '\0';
    ok = lh_app_key_ok(key, len);
  }
  if (is_app) {
    *bad = !ok;
    return ok ? 1 : 0;
  }
  if (!ok || strcmp(key, "config") == 0 || lh_config_is_option(key, len))
    return 0;
  /* LUAHOST_<OPTION>_FILE: the option's value read from a file (config.c) */
  if (len > 5 && strcmp(key + len - 5, "_file") == 0 && lh_config_is_option(key, len - 5))
    return 0;
  return 2;
}

/* Applies LUAHOST_<NAME> for names that are no host option, then LUAHOST_APP_<KEY> (which wins),
 * to the application's section. */
int lh_config_app_env(char *json, size_t jsonmax, char *err, size_t errlen) {
  char key[LH_APP_MAX_KEY + 1], var[96];
  int any = 0, bad;
  for (char **e = environ; e && *e && !any; e++)
    any = lh_app_env_key(*e, key, &bad) != 0 || bad;
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
  for (int pass = 2; pass >= 1; pass--) {
    for (char **e = environ; rc == 0 && e && *e; e++) {
      int kind = lh_app_env_key(*e, key, &bad);
      const char *eq = strchr(*e, '=');
      snprintf(var, sizeof var, "%.*s", eq ? (int)(eq - *e) : 60, *e);
      if (bad) {
        lh_errf(err, errlen, "%s: the key after LUAHOST_APP_ must be a name like MAX_ITEMS", var);
        rc = LH_EINVAL;
      } else if (kind == pass) {
        rc = lh_app_env_set(L, key, eq + 1, var, err, errlen);
      }
    }
  }
  if (rc == 0)
    rc = lh_config_app_store(L, lua_gettop(L), json, jsonmax, "app (from the environment)", err,
                             errlen);
  lua_close(L);
  return rc < 0 ? LH_EINVAL : 0;
}
