/* lua_core.c: the `luahost` module: time (now, monotonic_ms, sleep), random_hex, form_decode,
 * the script generation, and `config`: the host's non-secret settings plus `app`, the
 * application's own section of the configuration, all read-only.
 *
 * The host knows no application setting by name: `app` is whatever luahost.conf's `app` section
 * and the variables config_app.c maps into it hold. Reading an application key at the top level
 * (config.<key>, as scripts did before `app` existed) still works and logs a deprecation once per
 * key and state. */
#include <lauxlib.h>
#include <sodium.h>
#include <string.h>
#include <uv.h>

#include "lh.h"
#include "log.h"
#include "lua_api.h"
#include "scheduler.h"
#include "vm.h"

static int l_sleep(lua_State *L) {
  return lh_sched_sleep(L, luaL_checknumber(L, 1));
}

static int l_now(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  return 1;
}

static int l_monotonic_ms(lua_State *L) {
  lua_pushnumber(L, (double)lh_now_ns() / 1e6);
  return 1;
}

static int l_random_hex(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "between 1 and 64 bytes expected");
  unsigned char raw[64];
  char hex[129];
  randombytes_buf(raw, (size_t)n);
  sodium_bin2hex(hex, sizeof(hex), raw, (size_t)n);
  lua_pushstring(L, hex);
  return 1;
}

static int l_generation(lua_State *L) {
  lh_vm_t *vm = lh_vm_of(L);
  lua_pushstring(L, vm ? lh_vm_generation(vm) : "");
  return 1;
}

static int readonly_newindex(lua_State *L) {
  return luaL_error(L, "luahost.config is read-only");
}

/* Replaces the table at the top of the stack by a read-only proxy of it, nested tables too. */
static void make_readonly(lua_State *L, int depth) {
  luaL_checkstack(L, 6, "config too deep");
  if (depth < LH_JSON_MAX_DEPTH) {
    lua_pushnil(L); /* values, key */
    while (lua_next(L, -2)) {
      if (lua_istable(L, -1)) {
        make_readonly(L, depth + 1); /* values, key, proxy */
        lua_pushvalue(L, -2);
        lua_insert(L, -2); /* values, key, key, proxy */
        lua_rawset(L, -4); /* values, key */
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_newtable(L); /* values, proxy */
  lua_createtable(L, 0, 3);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, readonly_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_remove(L, -2); /* proxy */
}

/* __index of config for keys that are not host settings: upvalues app, warned. */
static int legacy_index(lua_State *L) {
  const char *key = lua_tostring(L, 2);
  lua_pushvalue(L, 2);
  lua_gettable(L, lua_upvalueindex(1));
  if (key && !lua_isnil(L, -1)) {
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    if (lua_isnil(L, -1)) {
      lh_warn("luahost.config.%s is deprecated: read luahost.config.app.%s", key, key);
      lua_pushvalue(L, 2);
      lua_pushboolean(L, 1);
      lua_rawset(L, lua_upvalueindex(2));
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* Pushes luahost.config for cfg. */
static void push_config(lua_State *L, const lh_config_t *c) {
  char err[256] = "not an object";
  const char *app = c->app_json[0] ? c->app_json : "{}";
  int top = lua_gettop(L);
  if (lh_json_decode(L, app, strlen(app), err, sizeof(err)) != 0 || !lua_istable(L, -1)) {
    /* config.c only hands over a JSON object; anything else is a host bug, not a script's. */
    lh_error("configuration: the app section is not a JSON object (%s)", err);
    lua_settop(L, top);
    lua_newtable(L);
  }
  make_readonly(L, 1);      /* app */
  lua_createtable(L, 0, 5); /* app, values */
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "app");
  lua_pushstring(L, c->db);
  lua_setfield(L, -2, "db");
  lua_pushstring(L, c->password_scheme);
  lua_setfield(L, -2, "password_scheme");
  lua_pushinteger(L, c->token_ttl);
  lua_setfield(L, -2, "token_ttl");
  lua_pushboolean(L, c->dev);
  lua_setfield(L, -2, "dev");
  lua_createtable(L, 0, 1); /* app, values, values_mt */
  lua_pushvalue(L, -3);
  lua_newtable(L);
  lua_pushcclosure(L, legacy_index, 2);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2); /* app, values */
  lua_remove(L, -2);
  make_readonly(L, LH_JSON_MAX_DEPTH); /* values are built: no need to walk them again */
}

int lh_lua_core_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"sleep", l_sleep},
                                 {"now", l_now},
                                 {"monotonic_ms", l_monotonic_ms},
                                 {"form_decode", lh_json_l_form_decode},
                                 {"random_hex", l_random_hex},
                                 {"generation", l_generation},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lh_vm_t *vm = lh_vm_of(L);
  if (vm) {
    push_config(L, lh_vm_config(vm));
    lua_setfield(L, -2, "config");
  }
  return 1;
}
