/* vm_request.c: request marshalling: the table a handler gets as `req`, built from what C already
 * parsed. Only what every request needs is built eagerly (method, path, params, client, id);
 * the headers table, the query string and the raw body are attached as they are, and the runtime
 * decodes the query and body once, on first use. */
#include <lauxlib.h>
#include <string.h>

#include "lh.h"
#include "vm_internal.h"

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

void lh_vm_push_request(lua_State *co, const lh_exchange_t *ex) {
  const lh_request_t *req = ex->req;
  lua_createtable(co, 0, 12);
  lua_pushstring(co, req->method);
  lua_setfield(co, -2, "method");
  lua_pushlstring(co, req->path, req->path_len);
  lua_setfield(co, -2, "path");
  lua_createtable(co, 0, ex->match.nparams);
  for (int i = 0; i < ex->match.nparams; i++) {
    const lh_route_param_t *p = &ex->match.params[i];
    lua_pushlstring(co, p->name, p->name_len);
    push_decoded(co, req->path + p->off, p->len);
    lua_rawset(co, -3);
  }
  lua_setfield(co, -2, "params");
  if (req->query) {
    lua_pushlstring(co, req->query, req->query_len);
    lua_setfield(co, -2, "query_string");
  }
  push_headers(co, req);
  lua_setfield(co, -2, "headers");
  if (req->body) {
    lua_pushlstring(co, req->body, req->body_len);
    lua_setfield(co, -2, "raw_body");
  }
  lua_pushstring(co, ex->client_addr ? ex->client_addr : "");
  lua_setfield(co, -2, "client");
  lua_pushstring(co, ex->request_id ? ex->request_id : "");
  lua_setfield(co, -2, "id");
}
