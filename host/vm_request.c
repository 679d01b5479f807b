/* vm_request.c: request marshalling: the table a handler gets as `req`, built from what C already
 * parsed. Only what every request needs is built eagerly (method, path, params, query_string,
 * client, id). The rest is read from the parsed request on first use, once, then kept in the
 * table: `req.headers` (names lower-case), `req.query` (the query string decoded, for routes
 * without a query schema; the runtime sets it from the schema otherwise) and `req.raw_body`.
 * A request table outlives its request only if a script keeps it: reading a lazy field then
 * raises instead of touching freed memory. */
#include <lauxlib.h>
#include <string.h>

#include "json.h"
#include "lh.h"
#include "lua_api.h"
#include "vm_internal.h"

/* Header names arrive lower-cased from the parser; repeated fields are joined with ", " as HTTP
 * allows for list-valued headers. */
static void push_headers(lua_State *co, const lh_request_t *req) {
  lua_createtable(co, 0, (int)req->nheaders);
  for (size_t i = 0; i < req->nheaders; i++) {
    const lh_header_t *h = &req->headers[i];
    lua_pushlstring(co, h->name, h->name_len);
    lua_pushvalue(co, -1);
    lua_rawget(co, -3); /* headers, name, previous */
    if (lua_isnil(co, -1)) {
      lua_pop(co, 1);
      lua_pushlstring(co, h->value, h->value_len);
    } else {
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, h->value, h->value_len);
      lua_concat(co, 3);
    }
    lua_rawset(co, -3);
  }
}

/* The lazy fields' source: the exchange while its task runs, NULL after. */
struct lh_req_handle_s {
  lh_exchange_t *ex;
};

static int req_index(lua_State *L) {
  size_t kl;
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &kl) : NULL;
  int field = !k                           ? 0
              : strcmp(k, "headers") == 0  ? 1
              : strcmp(k, "query") == 0    ? 2
              : strcmp(k, "raw_body") == 0 ? 3
                                           : 0;
  if (!field)
    return 0;
  lh_req_handle_t *h = lua_touserdata(L, lua_upvalueindex(1));
  if (!h || !h->ex)
    return luaL_error(L, "req.%s: the request is over", k);
  const lh_request_t *req = h->ex->req;
  if (field == 1) {
    push_headers(L, req);
  } else if (field == 2) {
    char err[256];
    if (!req->query)
      return 0;
    if (lh_form_decode(L, req->query, req->query_len, err, sizeof(err)) != 0)
      lua_newtable(L); /* malformed: routes with a schema report it (422) */
  } else {
    if (!req->body)
      return 0;
    lua_pushlstring(L, req->body, req->body_len);
  }
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1); /* decoded once: the table keeps it */
  return 1;
}

/* Stores every new field; `req.user = user` (the runtime, once authenticate returned a user) also
 * copies the user's `id` (a string or a number, read raw: no script code runs here) for the access
 * log. */
static int req_newindex(lua_State *L) {
  lh_req_handle_t *h = lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 3);
  if (h && h->ex && lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "user") == 0) {
    char *out = h->ex->user_id;
    out[0] = '\0';
    if (lua_type(L, 3) == LUA_TTABLE) {
      lua_pushliteral(L, "id");
      lua_rawget(L, 3);
      int t = lua_type(L, -1);
      size_t n = 0;
      const char *id = t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tolstring(L, -1, &n) : NULL;
      if (id) {
        n = n < sizeof(h->ex->user_id) ? n : sizeof(h->ex->user_id) - 1;
        memcpy(out, id, n);
        out[n] = '\0';
      }
      lua_pop(L, 1);
    }
  }
  lua_rawset(L, 1);
  return 0;
}

void lh_vm_request_over(lh_req_handle_t *h) {
  if (h)
    h->ex = NULL;
}

lh_req_handle_t *lh_vm_push_request(lua_State *co, lh_exchange_t *ex) {
  const lh_request_t *req = ex->req;
  lua_createtable(co, 0, 12);
  /* The metatable holds the handle (an upvalue of __index): scripts see neither. */
  lua_createtable(co, 0, 3);
  lh_req_handle_t *h = lua_newuserdata(co, sizeof(*h));
  h->ex = ex;
  ex->user_id[0] = '\0';
  lua_pushvalue(co, -1);
  lua_pushcclosure(co, req_index, 1);
  lua_setfield(co, -3, "__index");
  lua_pushcclosure(co, req_newindex, 1);
  lua_setfield(co, -2, "__newindex");
  lua_pushboolean(co, 0);
  lua_setfield(co, -2, "__metatable");
  lua_setmetatable(co, -2);
  lua_pushstring(co, req->method);
  lua_setfield(co, -2, "method");
  lua_pushlstring(co, req->path, req->path_len);
  lua_setfield(co, -2, "path");
  lh_lua_push_route_params(co, req->path, &ex->match);
  lua_setfield(co, -2, "params");
  if (req->query) {
    lua_pushlstring(co, req->query, req->query_len);
    lua_setfield(co, -2, "query_string");
  }
  lua_pushstring(co, ex->client_addr ? ex->client_addr : "");
  lua_setfield(co, -2, "client");
  lua_pushstring(co, ex->request_id ? ex->request_id : "");
  lua_setfield(co, -2, "id");
  return h;
}
