/* vm_response.c: response collection: turns what a handler returned (`status, body, headers`)
 * into the exchange's status, header lines and body bytes, refusing what the host manages itself
 * (Content-Length, Date, X-Request-Id, ...). A string body is sent as it is (text/plain unless
 * the handler set Content-Type); any other body is encoded as JSON. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "lh.h"
#include "response.h"
#include "vm_internal.h"

static int header_forbidden(const char *name, size_t n) {
  static const char *const names[] = {
      "content-length", "connection",   "transfer-encoding",     "date",
      "server",         "x-request-id", "x-content-type-options"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(names); i++)
    if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
      return 1;
  return 0;
}

/* The headers table at index 3 of co: each entry becomes a header line (or the Content-Type). */
static int collect_headers(lua_State *co, lh_exchange_t *ex, char *why, size_t whylen) {
  lua_pushnil(co);
  while (lua_next(co, 3)) {
    if (lua_type(co, -2) != LUA_TSTRING ||
        (lua_type(co, -1) != LUA_TSTRING && lua_type(co, -1) != LUA_TNUMBER)) {
      snprintf(why, whylen, "response headers must map names to strings");
      lua_pop(co, 2);
      return LH_EINVAL;
    }
    size_t nl, vl;
    const char *name = lua_tolstring(co, -2, &nl);
    lua_pushvalue(co, -1); /* a number value is converted on the copy, not on the table's */
    const char *value = lua_tolstring(co, -1, &vl);
    if (!lh_header_is_valid(name, nl, value, vl) || header_forbidden(name, nl)) {
      snprintf(why, whylen, "invalid or host-managed response header '%.64s'", name);
      lua_pop(co, 3);
      return LH_EINVAL;
    }
    if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) {
      if (vl >= sizeof(ex->content_type)) {
        snprintf(why, whylen, "Content-Type too long");
        lua_pop(co, 3);
        return LH_EINVAL;
      }
      memcpy(ex->content_type, value, vl + 1);
    } else {
      lh_buf_append(&ex->headers, name, nl);
      lh_buf_puts(&ex->headers, ": ");
      lh_buf_append(&ex->headers, value, vl);
      lh_buf_puts(&ex->headers, "\r\n");
    }
    lua_pop(co, 2);
  }
  return 0;
}

int lh_vm_collect_response(lua_State *co, lh_exchange_t *ex, char *why, size_t whylen) {
  int n = lua_gettop(co);
  if (n < 1 || lua_type(co, 1) != LUA_TNUMBER) {
    snprintf(why, whylen, "the handler returned no status");
    return LH_EINVAL;
  }
  lua_Number st = lua_tonumber(co, 1);
  if (st != (int)st || st < 200 || st > 599) {
    snprintf(why, whylen, "the handler returned an invalid status %g", (double)st);
    return LH_EINVAL;
  }
  ex->status = (int)st;
  if (n >= 3 && lua_istable(co, 3)) {
    int rc = collect_headers(co, ex, why, whylen);
    if (rc != 0)
      return rc;
  } else if (n >= 3 && !lua_isnil(co, 3)) {
    snprintf(why, whylen, "response headers must be a table");
    return LH_EINVAL;
  }
  if (n >= 2 && lua_type(co, 2) == LUA_TSTRING) {
    size_t bl;
    const char *b = lua_tolstring(co, 2, &bl);
    lh_buf_append(&ex->body, b, bl);
    if (!ex->content_type[0])
      snprintf(ex->content_type, sizeof(ex->content_type), "text/plain; charset=utf-8");
  } else if (n >= 2 && !lua_isnil(co, 2)) {
    if (lh_json_encode(co, 2, &ex->body, why, whylen) != 0)
      return LH_EINVAL;
  }
  if (ex->body.failed || ex->headers.failed) {
    snprintf(why, whylen, "out of memory");
    return LH_ENOMEM;
  }
  return 0;
}

void lh_vm_set_error(lh_exchange_t *ex, const char *kind) {
  const lh_error_kind_t *k = lh_error_kind(kind);
  if (!k)
    k = lh_error_kind("internal_error");
  ex->status = k->status;
  lh_buf_reset(&ex->body);
  lh_buf_reset(&ex->headers);
  ex->content_type[0] = '\0';
  lh_error_kind_write(k, &ex->body, &ex->headers);
}
