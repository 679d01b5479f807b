/* bson.c: BSON <-> Lua conversion and the ObjectId, date and regex userdata types (see bson.h).
 * Owns nothing global: the metatables live in each Lua state's registry, created on first use. */
#include "bson.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "json.h"
#include "lh.h"
#include "timefmt.h"

typedef struct {
  char *pattern;
  char options[8];
} lh_regex_t;

/* ---- metatables ---------------------------------------------------------------------------- */

static int oid_tostring(lua_State *L) {
  const bson_oid_t *oid = luaL_checkudata(L, 1, LH_OBJECTID_MT);
  char hex[25];
  bson_oid_to_string(oid, hex);
  lua_pushlstring(L, hex, 24);
  return 1;
}

static int oid_eq(lua_State *L) {
  const bson_oid_t *a = lh_bson_to_oid(L, 1);
  const bson_oid_t *b = lh_bson_to_oid(L, 2);
  lua_pushboolean(L, a && b && bson_oid_equal(a, b));
  return 1;
}

/* oid:date() -> the luahost.date of the id's creation (its leading 4 bytes are seconds). */
static int oid_date(lua_State *L) {
  const bson_oid_t *oid = luaL_checkudata(L, 1, LH_OBJECTID_MT);
  lh_bson_push_date(L, (int64_t)bson_oid_get_time_t(oid) * 1000);
  return 1;
}

static int64_t check_date(lua_State *L, int idx) {
  return *(const int64_t *)luaL_checkudata(L, idx, LH_DATE_MT);
}

static int date_ms(lua_State *L) {
  lua_pushnumber(L, (lua_Number)check_date(L, 1));
  return 1;
}

static int date_tostring(lua_State *L) {
  char buf[40];
  int64_t ms = check_date(L, 1);
  if (lh_bson_format_date(ms, buf, sizeof buf) != 0) {
    /* Out of the RFC 3339 range: the raw number is still informative and never wrong. */
    snprintf(buf, sizeof buf, "%lld", (long long)ms);
  }
  lua_pushstring(L, buf);
  return 1;
}

static int date_eq(lua_State *L) {
  int64_t a, b;
  lua_pushboolean(L, lh_bson_to_date(L, 1, &a) && lh_bson_to_date(L, 2, &b) && a == b);
  return 1;
}

static int date_lt(lua_State *L) {
  lua_pushboolean(L, check_date(L, 1) < check_date(L, 2));
  return 1;
}

static int date_le(lua_State *L) {
  lua_pushboolean(L, check_date(L, 1) <= check_date(L, 2));
  return 1;
}

static int regex_gc(lua_State *L) {
  lh_regex_t *re = luaL_checkudata(L, 1, LH_REGEX_MT);
  bson_free(re->pattern);
  re->pattern = NULL;
  return 0;
}

static int regex_tostring(lua_State *L) {
  lh_regex_t *re = luaL_checkudata(L, 1, LH_REGEX_MT);
  lua_pushfstring(L, "/%s/%s", re->pattern ? re->pattern : "", re->options);
  return 1;
}

/* Creates (once) and pushes the metatable `name`. Metatables are locked with __metatable so a
 * sandboxed script cannot swap the methods of host values. */
static void push_mt(lua_State *L, const char *name) {
  if (!luaL_newmetatable(L, name)) {
    return;
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  if (strcmp(name, LH_OBJECTID_MT) == 0) {
    lua_pushcfunction(L, oid_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, oid_eq);
    lua_setfield(L, -2, "__eq");
    lua_newtable(L);
    lua_pushcfunction(L, oid_date);
    lua_setfield(L, -2, "date");
    lua_setfield(L, -2, "__index");
  } else if (strcmp(name, LH_DATE_MT) == 0) {
    lua_newtable(L);
    lua_pushcfunction(L, date_ms);
    lua_setfield(L, -2, "ms");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, date_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, date_eq);
    lua_setfield(L, -2, "__eq");
    lua_pushcfunction(L, date_lt);
    lua_setfield(L, -2, "__lt");
    lua_pushcfunction(L, date_le);
    lua_setfield(L, -2, "__le");
  } else {
    lua_pushcfunction(L, regex_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, regex_tostring);
    lua_setfield(L, -2, "__tostring");
  }
}

/* The userdata at idx if it carries metatable `name`, else NULL. Never raises. */
static void *test_udata(lua_State *L, int idx, const char *name) {
  void *p = lua_touserdata(L, idx);
  if (p == NULL || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) {
    return NULL;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

void lh_bson_push_oid(lua_State *L, const bson_oid_t *oid) {
  bson_oid_t *ud = lua_newuserdata(L, sizeof *ud);
  bson_oid_copy(oid, ud);
  push_mt(L, LH_OBJECTID_MT);
  lua_setmetatable(L, -2);
}

const bson_oid_t *lh_bson_to_oid(lua_State *L, int idx) {
  return test_udata(L, idx, LH_OBJECTID_MT);
}

void lh_bson_push_date(lua_State *L, int64_t ms) {
  int64_t *ud = lua_newuserdata(L, sizeof *ud);
  *ud = ms;
  push_mt(L, LH_DATE_MT);
  lua_setmetatable(L, -2);
}

int lh_bson_to_date(lua_State *L, int idx, int64_t *ms) {
  const int64_t *p = test_udata(L, idx, LH_DATE_MT);
  if (p == NULL) {
    return 0;
  }
  *ms = *p;
  return 1;
}

void lh_bson_push_regex(lua_State *L, const char *pattern, const char *options) {
  lh_regex_t *re = lua_newuserdata(L, sizeof *re);
  re->pattern = NULL;
  re->options[0] = '\0';
  push_mt(L, LH_REGEX_MT);
  lua_setmetatable(L, -2);
  /* The metatable (with __gc) is set before the copy so the string can never leak. */
  re->pattern = bson_strdup(pattern);
  snprintf(re->options, sizeof re->options, "%s", options ? options : "");
}

int lh_bson_format_date(int64_t ms, char *buf, size_t buflen) {
  return lh_time_format(ms, LH_TIME_ISO8601, buf, buflen);
}

/* ---- Lua -> BSON --------------------------------------------------------------------------- */

static int append_table(lua_State *L, int idx, bson_t *out, int depth, char *err, size_t errlen);
static int append_value(lua_State *L, int idx, bson_t *out, const char *key, int keylen, int depth,
                        char *err, size_t errlen);

static int fail(char *err, size_t errlen, const char *what, const char *key) {
  snprintf(err, errlen, "%s%s%s", what, key ? " at key " : "", key ? key : "");
  return LH_EINVAL;
}

static int append_array(lua_State *L, int idx, bson_t *out, const char *key, int keylen, size_t n,
                        int depth, char *err, size_t errlen) {
  bson_t child;
  if (!bson_append_array_begin(out, key, keylen, &child)) {
    return fail(err, errlen, "document too large", key);
  }
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char numbuf[24];
    const char *ikey;
    size_t ilen = bson_uint32_to_string((uint32_t)i, &ikey, numbuf, sizeof numbuf);
    lua_rawgeti(L, idx, (int)(i + 1));
    rc = append_value(L, lua_gettop(L), &child, ikey, (int)ilen, depth, err, errlen);
    lua_pop(L, 1);
  }
  if (!bson_append_array_end(out, &child) && rc == 0) {
    rc = fail(err, errlen, "document too large", key);
  }
  return rc;
}

static int append_number(lua_Number d, bson_t *out, const char *key, int keylen) {
  const lua_Number safe = (lua_Number)LH_MAX_SAFE_INT;
  if (d == floor(d) && !(d == 0 && signbit(d))) {
    if (d >= INT32_MIN && d <= INT32_MAX) {
      return bson_append_int32(out, key, keylen, (int32_t)d);
    }
    if (d >= -safe && d <= safe) {
      return bson_append_int64(out, key, keylen, (int64_t)d);
    }
  }
  /* Fractions, -0, values past 2^53 (no longer exact integers), NaN and infinities. */
  return bson_append_double(out, key, keylen, d);
}

static int append_userdata(lua_State *L, int idx, bson_t *out, const char *key, int keylen,
                           char *err, size_t errlen) {
  const bson_oid_t *oid = lh_bson_to_oid(L, idx);
  if (oid != NULL) {
    return bson_append_oid(out, key, keylen, oid) ? 0 : fail(err, errlen, "too large", key);
  }
  int64_t ms;
  if (lh_bson_to_date(L, idx, &ms)) {
    return bson_append_date_time(out, key, keylen, ms) ? 0 : fail(err, errlen, "too large", key);
  }
  const lh_regex_t *re = test_udata(L, idx, LH_REGEX_MT);
  if (re != NULL && re->pattern != NULL) {
    return bson_append_regex(out, key, keylen, re->pattern, re->options)
               ? 0
               : fail(err, errlen, "too large", key);
  }
  return fail(err, errlen, "unsupported userdata", key);
}

static int append_value(lua_State *L, int idx, bson_t *out, const char *key, int keylen, int depth,
                        char *err, size_t errlen) {
  int ok = 1;
  switch (lua_type(L, idx)) {
  case LUA_TNUMBER: ok = append_number(lua_tonumber(L, idx), out, key, keylen); break;
  case LUA_TBOOLEAN: ok = bson_append_bool(out, key, keylen, lua_toboolean(L, idx)); break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    /* Not bson_utf8_validate(..., allow_null=true): it also accepts the overlong C0 80 of
     * "modified UTF-8", which strict decoders refuse. A real NUL byte stays allowed. */
    if (!lh_utf8_valid((const unsigned char *)s, len)) {
      return fail(err, errlen, "invalid UTF-8 string", key);
    }
    ok = bson_append_utf8(out, key, keylen, s, (int)len);
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) != NULL) {
      return fail(err, errlen, "unsupported light userdata", key);
    }
    ok = bson_append_null(out, key, keylen);
    break;
  case LUA_TUSERDATA: return append_userdata(L, idx, out, key, keylen, err, errlen);
  case LUA_TTABLE: {
    if (depth >= LH_BSON_MAX_DEPTH) {
      return fail(err, errlen, "nesting too deep", key);
    }
    if (!lua_checkstack(L, 8)) {
      return fail(err, errlen, "Lua stack exhausted", key);
    }
    size_t n;
    if (lh_lua_is_array(L, idx, &n)) {
      return append_array(L, idx, out, key, keylen, n, depth + 1, err, errlen);
    }
    bson_t child;
    if (!bson_append_document_begin(out, key, keylen, &child)) {
      return fail(err, errlen, "document too large", key);
    }
    int rc = append_table(L, idx, &child, depth + 1, err, errlen);
    if (!bson_append_document_end(out, &child) && rc == 0) {
      rc = fail(err, errlen, "document too large", key);
    }
    return rc;
  }
  default: return fail(err, errlen, lua_typename(L, lua_type(L, idx)), key);
  }
  return ok ? 0 : fail(err, errlen, "document too large", key);
}

static int append_table(lua_State *L, int idx, bson_t *out, int depth, char *err, size_t errlen) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      lua_pop(L, 2);
      return fail(err, errlen, "non-string key in document", NULL);
    }
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);
    if (memchr(k, '\0', klen) != NULL || !bson_utf8_validate(k, klen, false)) {
      lua_pop(L, 2);
      return fail(err, errlen, "key with NUL or invalid UTF-8", NULL);
    }
    int rc = append_value(L, lua_gettop(L), out, k, (int)klen, depth, err, errlen);
    lua_pop(L, 1);
    if (rc != 0) {
      lua_pop(L, 1);
      return rc;
    }
  }
  return 0;
}

int lh_bson_from_lua(lua_State *L, int idx, bson_t *out, char *err, size_t errlen) {
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  if (lua_type(L, idx) != LUA_TTABLE) {
    return fail(err, errlen, "document must be a table", NULL);
  }
  if (!lua_checkstack(L, 8)) {
    return fail(err, errlen, "Lua stack exhausted", NULL);
  }
  size_t n;
  if (lh_lua_is_array(L, idx, &n) && n > 0) {
    return fail(err, errlen, "top level must be a document, not an array", NULL);
  }
  return append_table(L, idx, out, 1, err, errlen);
}

/* ---- BSON -> Lua --------------------------------------------------------------------------- */

static int push_iter(lua_State *L, const bson_iter_t *it, int depth);

/* Pushes the container the iterator points into as a table; `array` adds the array marker. */
static int push_container(lua_State *L, bson_iter_t *child, int array, int depth) {
  if (depth > LH_BSON_MAX_DEPTH) {
    return LH_ELIMIT;
  }
  if (!lua_checkstack(L, 6)) {
    return LH_ELIMIT;
  }
  lua_newtable(L);
  int t = lua_gettop(L);
  int i = 1;
  while (bson_iter_next(child)) {
    /* A key that is not UTF-8 is a corrupt element, in an array too (whose keys are otherwise
     * ignored); it is refused rather than repaired: two repaired keys could collide. */
    const char *key = bson_iter_key(child);
    uint32_t klen = bson_iter_key_len(child);
    if (!lh_utf8_valid((const unsigned char *)key, klen)) {
      lua_settop(L, t - 1);
      return LH_EINVAL;
    }
    int rc = push_iter(L, child, depth);
    if (rc != 0) {
      lua_settop(L, t - 1);
      return rc;
    }
    if (array) {
      lua_rawseti(L, t, i++);
    } else {
      lua_pushlstring(L, key, klen);
      lua_insert(L, -2);
      lua_rawset(L, t);
    }
  }
  /* bson_iter_next also stops at a corrupt element (a length past the document, a bad type):
   * that must fail the conversion, not read as the end of the document. */
  if (child->err_off != 0) {
    lua_settop(L, t - 1);
    return LH_EINVAL;
  }
  if (array) {
    lh_json_push_array_mt(L);
    lua_setmetatable(L, t);
  }
  return 0;
}

static void push_binary(lua_State *L, const bson_iter_t *it) {
  bson_subtype_t sub;
  uint32_t len;
  const uint8_t *data;
  bson_iter_binary(it, &sub, &len, &data);
  lua_pushlstring(L, (const char *)data, len);
}

/* Pushes a BSON string. BSON strings are UTF-8, but nothing forces a stored document's to be:
 * an ill-formed sequence is pushed as U+FFFD, one per byte it cannot start, so what the host reads
 * it can write back (lh_bson_from_lua refuses invalid UTF-8), as JSON encoding repairs values. */
static void push_utf8(lua_State *L, const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  if (lh_utf8_valid(p, len)) {
    lua_pushlstring(L, s, len);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  while (i < len) {
    size_t n = p[i] == 0 ? 1 : lh_utf8_seq_len(p + i, len - i);
    if (n == 0) {
      luaL_addlstring(&b, "\xEF\xBF\xBD", 3);
      i++;
    } else {
      luaL_addlstring(&b, s + i, n);
      i += n;
    }
  }
  luaL_pushresult(&b);
}

static int push_iter(lua_State *L, const bson_iter_t *it, int depth) {
  switch (bson_iter_type(it)) {
  case BSON_TYPE_DOUBLE: lua_pushnumber(L, bson_iter_double(it)); return 0;
  case BSON_TYPE_INT32: lua_pushnumber(L, bson_iter_int32(it)); return 0;
  case BSON_TYPE_INT64: lua_pushnumber(L, (lua_Number)bson_iter_int64(it)); return 0;
  case BSON_TYPE_UTF8: {
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    push_utf8(L, s, len);
    return 0;
  }
  case BSON_TYPE_SYMBOL: {
    uint32_t len;
    const char *s = bson_iter_symbol(it, &len);
    push_utf8(L, s, len);
    return 0;
  }
  case BSON_TYPE_CODE: {
    uint32_t len;
    const char *s = bson_iter_code(it, &len);
    push_utf8(L, s, len);
    return 0;
  }
  case BSON_TYPE_CODEWSCOPE: {
    uint32_t len, slen;
    const uint8_t *scope;
    const char *s = bson_iter_codewscope(it, &len, &slen, &scope);
    push_utf8(L, s, len);
    return 0;
  }
  case BSON_TYPE_DOCUMENT:
  case BSON_TYPE_ARRAY: {
    bson_iter_t child;
    if (!bson_iter_recurse(it, &child)) {
      return LH_EINVAL;
    }
    return push_container(L, &child, bson_iter_type(it) == BSON_TYPE_ARRAY, depth + 1);
  }
  case BSON_TYPE_BINARY: push_binary(L, it); return 0;
  case BSON_TYPE_OID: lh_bson_push_oid(L, bson_iter_oid(it)); return 0;
  case BSON_TYPE_BOOL: lua_pushboolean(L, bson_iter_bool(it)); return 0;
  case BSON_TYPE_DATE_TIME: lh_bson_push_date(L, bson_iter_date_time(it)); return 0;
  case BSON_TYPE_REGEX: {
    const char *options;
    const char *pattern = bson_iter_regex(it, &options);
    lh_bson_push_regex(L, pattern, options);
    return 0;
  }
  case BSON_TYPE_DECIMAL128: {
    bson_decimal128_t dec;
    char buf[BSON_DECIMAL128_STRING];
    bson_iter_decimal128(it, &dec);
    bson_decimal128_to_string(&dec, buf);
    lua_pushstring(L, buf);
    return 0;
  }
  case BSON_TYPE_TIMESTAMP: {
    uint32_t ts, inc;
    bson_iter_timestamp(it, &ts, &inc);
    lua_pushnumber(L, (lua_Number)(((uint64_t)ts << 32) | inc));
    return 0;
  }
  case BSON_TYPE_DBPOINTER: lua_pushliteral(L, "DBPointer"); return 0;
  case BSON_TYPE_MINKEY: lua_pushliteral(L, "MinKey"); return 0;
  case BSON_TYPE_MAXKEY: lua_pushliteral(L, "MaxKey"); return 0;
  case BSON_TYPE_NULL:
  case BSON_TYPE_UNDEFINED:
  default: lua_pushlightuserdata(L, NULL); return 0;
  }
}

int lh_bson_push_iter(lua_State *L, const bson_iter_t *it) {
  if (!lua_checkstack(L, 6)) {
    return LH_ELIMIT;
  }
  return push_iter(L, it, 1);
}

int lh_bson_to_lua(lua_State *L, const bson_t *doc) {
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) {
    return LH_EINVAL;
  }
  return push_container(L, &it, 0, 1);
}

/* ---- constructors -------------------------------------------------------------------------- */

/* objectid(): a new id. objectid(hex): nil, "bad_value" unless hex is 24 hex digits, since ids
 * come from clients. An ObjectId argument is returned as is. */
static int l_objectid(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    lh_bson_push_oid(L, &oid);
    return 1;
  }
  if (lh_bson_to_oid(L, 1) != NULL) {
    lua_settop(L, 1);
    return 1;
  }
  size_t len;
  const char *hex = luaL_checklstring(L, 1, &len);
  if (len != 24 || lua_type(L, 1) != LUA_TSTRING || !bson_oid_is_valid(hex, len)) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad_value");
    return 2;
  }
  bson_oid_t oid;
  bson_oid_init_from_string(&oid, hex);
  lh_bson_push_oid(L, &oid);
  return 1;
}

static int l_date(lua_State *L) {
  lua_Number d = luaL_checknumber(L, 1);
  if (d != floor(d) || d < -9.2e18 || d > 9.2e18) {
    return luaL_argerror(L, 1, "integral milliseconds expected");
  }
  lh_bson_push_date(L, (int64_t)d);
  return 1;
}

static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lh_bson_push_date(L, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
  return 1;
}

static int l_regex(lua_State *L) {
  const char *pattern = luaL_checkstring(L, 1);
  size_t olen;
  const char *options = luaL_optlstring(L, 2, "", &olen);
  if (olen > 6 || strspn(options, "ilmsux") != olen) {
    return luaL_argerror(L, 2, "options must be a subset of \"ilmsux\"");
  }
  if (strlen(pattern) != lua_objlen(L, 1)) {
    return luaL_argerror(L, 1, "pattern contains NUL");
  }
  lh_bson_push_regex(L, pattern, options);
  return 1;
}

void lh_bson_register_constructors(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"objectid", l_objectid}, {"date", l_date}, {"now", l_now}, {"regex", l_regex}, {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
