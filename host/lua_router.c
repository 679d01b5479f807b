/* lua_router.c: the C router (router.c) as the host's own Lua code sees it: the policy-test runner
 * (host/lua/policy_tests.lua) routes each test's request through a generation's real router, as a
 * live request is routed, so a test's `req.params` are exactly what a handler would get. Scripts
 * cannot require it (it is no entry of the registry); busted specs load it as
 * build/lua/luahost/router.so.
 *
 *   luahost.router.new() -> router             a router of its own (specs)
 *   router:add(method, pattern, id) -> true | nil, why
 *   router:match(method, path) -> id, params | nil, "not_found" | nil, "method_not_allowed"
 *   lh_lua_router_push_match(L, r)             the same `match` over a router the caller owns (the
 *                                              VM's: it must outlive the function, as it does) */
#include <lauxlib.h>
#include <string.h>

#include "lh.h"
#include "lua_api.h"
#include "router.h"

#define LH_ROUTER_MT "luahost.router"

/* Path parameters arrive percent-encoded; an invalid escape is kept as it is. */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  if (!memchr(s, '%', n)) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = lh_hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = lh_hexval((unsigned char)s[i + 2])) >= 0 && (hi || lo)) {
      luaL_addchar(&b, (char)(hi * 16 + lo));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

void lh_lua_push_route_params(lua_State *L, const char *path, const lh_route_match_t *m) {
  lua_createtable(L, 0, m->nparams);
  for (int i = 0; i < m->nparams; i++) {
    const lh_route_param_t *p = &m->params[i];
    lua_pushlstring(L, p->name, p->name_len);
    push_decoded(L, path + p->off, p->len);
    lua_rawset(L, -3);
  }
}

/* [-0, +2] id, params | nil, why */
static int match_with(lua_State *L, const lh_router_t *r, int arg) {
  size_t mlen, plen;
  const char *method = luaL_checklstring(L, arg, &mlen);
  const char *path = luaL_checklstring(L, arg + 1, &plen);
  int m = lh_method_parse(method, mlen);
  lh_route_match_t match;
  unsigned allowed = 0;
  int rc = m < 0 ? LH_ENOTFOUND : lh_router_match(r, (lh_method_t)m, path, plen, &match, &allowed);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == LH_EMETHOD ? "method_not_allowed" : "not_found");
    return 2;
  }
  lua_pushinteger(L, match.route_id);
  lh_lua_push_route_params(L, path, &match);
  return 2;
}

static int l_bound_match(lua_State *L) {
  return match_with(L, lua_touserdata(L, lua_upvalueindex(1)), 1);
}

void lh_lua_router_push_match(lua_State *L, const lh_router_t *r) {
  lua_pushlightuserdata(L, (void *)r);
  lua_pushcclosure(L, l_bound_match, 1);
}

static lh_router_t **check_router(lua_State *L) {
  lh_router_t **r = luaL_checkudata(L, 1, LH_ROUTER_MT);
  if (!*r)
    luaL_error(L, "router: already freed");
  return r;
}

static int l_new(lua_State *L) {
  lh_router_t **r = lua_newuserdata(L, sizeof(*r));
  *r = NULL;
  luaL_getmetatable(L, LH_ROUTER_MT);
  lua_setmetatable(L, -2);
  if (lh_router_create(r) != 0)
    return luaL_error(L, "router.new: out of memory");
  return 1;
}

static int l_add(lua_State *L) {
  lh_router_t **r = check_router(L);
  size_t mlen;
  const char *method = luaL_checklstring(L, 2, &mlen);
  const char *pattern = luaL_checkstring(L, 3);
  int id = (int)luaL_checkinteger(L, 4);
  char why[256] = "";
  int m = lh_method_parse(method, mlen);
  int rc = m < 0 ? LH_EINVAL : lh_router_add(*r, (lh_method_t)m, pattern, id, why, sizeof(why));
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, m < 0 ? "unknown method" : why);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_match(lua_State *L) {
  return match_with(L, *check_router(L), 2);
}

static int l_gc(lua_State *L) {
  lh_router_t **r = luaL_checkudata(L, 1, LH_ROUTER_MT);
  lh_router_free(*r);
  *r = NULL;
  return 0;
}

int luaopen_luahost_router(lua_State *L) {
  static const luaL_Reg methods[] = {{"add", l_add}, {"match", l_match}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", l_gc}, {NULL, NULL}};
  lh_lua_class(L, LH_ROUTER_MT, methods, meta);
  lua_newtable(L);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "new");
  return 1;
}
