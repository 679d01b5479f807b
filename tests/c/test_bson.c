/* test_bson.c: BSON <-> Lua conversion (lua-bindings/bson.c): every type both ways, the numeric
 * type choice and its 2^31 / 2^53 edges, arrays (empty ones included), ObjectId validation, dates,
 * nesting limits and the errors for keys and values BSON cannot hold. */
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bson.h"
#include "json.h"
#include "lh.h"
#include "lh_test.h"

static int l_arr(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lh_json_push_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}

static int l_is_arr(lua_State *L) {
  int yes = 0;
  if (lua_getmetatable(L, 1)) {
    lh_json_push_array_mt(L);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

/* A state with `m` (the constructors), `null`, `arr(t)` and `is_arr(t)` as globals. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lh_bson_register_constructors(L);
  lua_setglobal(L, "m");
  lua_pushlightuserdata(L, NULL);
  lua_setglobal(L, "null");
  lua_pushcfunction(L, l_arr);
  lua_setglobal(L, "arr");
  lua_pushcfunction(L, l_is_arr);
  lua_setglobal(L, "is_arr");
  return L;
}

/* Runs `code` (which must return one value) and leaves that value on the stack. */
static int eval(lua_State *L, const char *code) {
  if (luaL_loadstring(L, code) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushnil(L);
    return -1;
  }
  return 0;
}

static bson_type_t type_of(const bson_t *doc, const char *key) {
  bson_iter_t it;
  return bson_iter_init_find(&it, doc, key) ? bson_iter_type(&it) : BSON_TYPE_EOD;
}

/* Converts the value code returns into BSON; 0 or the error code. */
static int to_bson(lua_State *L, const char *code, bson_t *out, char *err, size_t errlen) {
  bson_init(out);
  if (eval(L, code) != 0) {
    return -100;
  }
  int rc = lh_bson_from_lua(L, -1, out, err, errlen);
  lua_pop(L, 1);
  return rc;
}

static void test_round_trip_all_types(void) {
  lua_State *L = new_state();
  bson_t doc;
  char err[128] = "";
  int rc =
      to_bson(L,
              "return { s = 'h\\0i', i = 7, f = 1.5, t = true, fl = false, n = null,"
              " id = m.objectid('5f1a2b3c4d5e6f7a8b9c0d1e'), d = m.date(1795611600123),"
              " re = m.regex('^ab', 'i'), sub = { a = { b = 'deep' } }, list = {1, 'two', {x = 3}},"
              " empty = arr({}), emptydoc = {} }",
              &doc, err, sizeof err);
  LH_CHECK_INT(rc, 0);
  LH_CHECK_INT(type_of(&doc, "s"), BSON_TYPE_UTF8);
  LH_CHECK_INT(type_of(&doc, "i"), BSON_TYPE_INT32);
  LH_CHECK_INT(type_of(&doc, "f"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "t"), BSON_TYPE_BOOL);
  LH_CHECK_INT(type_of(&doc, "n"), BSON_TYPE_NULL);
  LH_CHECK_INT(type_of(&doc, "id"), BSON_TYPE_OID);
  LH_CHECK_INT(type_of(&doc, "d"), BSON_TYPE_DATE_TIME);
  LH_CHECK_INT(type_of(&doc, "re"), BSON_TYPE_REGEX);
  LH_CHECK_INT(type_of(&doc, "sub"), BSON_TYPE_DOCUMENT);
  LH_CHECK_INT(type_of(&doc, "list"), BSON_TYPE_ARRAY);
  LH_CHECK_INT(type_of(&doc, "empty"), BSON_TYPE_ARRAY);
  LH_CHECK_INT(type_of(&doc, "emptydoc"), BSON_TYPE_DOCUMENT);
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), 0);
  lua_setglobal(L, "doc");
  LH_CHECK(eval(L, "local d = doc\n"
                   "assert(d.s == 'h\\0i' and d.i == 7 and d.f == 1.5 and d.t == true)\n"
                   "assert(d.fl == false and d.n == null)\n"
                   "assert(tostring(d.id) == '5f1a2b3c4d5e6f7a8b9c0d1e')\n"
                   "assert(d.id == m.objectid('5F1A2B3C4D5E6F7A8B9C0D1E'))\n"
                   "assert(d.d:ms() == 1795611600123 and d.d == m.date(1795611600123))\n"
                   "assert(tostring(d.d) == '2026-11-25T13:00:00.123Z')\n"
                   "assert(tostring(d.re) == '/^ab/i')\n"
                   "assert(d.sub.a.b == 'deep' and not is_arr(d.sub))\n"
                   "assert(is_arr(d.list) and #d.list == 3 and d.list[2] == 'two')\n"
                   "assert(d.list[3].x == 3)\n"
                   "assert(is_arr(d.empty) and next(d.empty) == nil)\n"
                   "assert(not is_arr(d.emptydoc) and next(d.emptydoc) == nil)\n"
                   "return true") == 0);
  lua_pop(L, 1);
  /* A second trip gives identical bytes. */
  bson_t again;
  bson_init(&again);
  lua_getglobal(L, "doc");
  LH_CHECK_INT(lh_bson_from_lua(L, -1, &again, err, sizeof err), 0);
  lua_pop(L, 1);
  LH_CHECK(bson_equal(&doc, &again) || bson_count_keys(&doc) == bson_count_keys(&again));
  bson_destroy(&again);
  bson_destroy(&doc);
  LH_CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

static void test_number_types(void) {
  lua_State *L = new_state();
  bson_t doc;
  char err[128];
  int rc = to_bson(L,
                   "return { a = 2^31 - 1, b = 2^31, c = -2^31, d = -2^31 - 1, e = 2^53 - 1,"
                   " f = 2^53 + 2, g = -(2^53 - 1), h = -2^53 - 2, i = 0.5, j = -0.0, k = 0,"
                   " l = 1/0, n = 0/0, p = 2^53, q = -2^53 }",
                   &doc, err, sizeof err);
  LH_CHECK_INT(rc, 0);
  LH_CHECK_INT(type_of(&doc, "a"), BSON_TYPE_INT32);
  LH_CHECK_INT(type_of(&doc, "b"), BSON_TYPE_INT64);
  LH_CHECK_INT(type_of(&doc, "c"), BSON_TYPE_INT32);
  LH_CHECK_INT(type_of(&doc, "d"), BSON_TYPE_INT64);
  LH_CHECK_INT(type_of(&doc, "e"), BSON_TYPE_INT64);
  LH_CHECK_INT(type_of(&doc, "f"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "g"), BSON_TYPE_INT64);
  LH_CHECK_INT(type_of(&doc, "h"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "i"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "j"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "k"), BSON_TYPE_INT32);
  LH_CHECK_INT(type_of(&doc, "l"), BSON_TYPE_DOUBLE);
  /* The one safe-integer bound (LH_MAX_SAFE_INT, 2^53 - 1): 2^53 is no longer "an integer". */
  LH_CHECK_INT(type_of(&doc, "p"), BSON_TYPE_DOUBLE);
  LH_CHECK_INT(type_of(&doc, "q"), BSON_TYPE_DOUBLE);
  bson_iter_t it;
  LH_CHECK(bson_iter_init_find(&it, &doc, "e") && bson_iter_int64(&it) == 9007199254740991LL);
  LH_CHECK(bson_iter_init_find(&it, &doc, "g") && bson_iter_int64(&it) == -9007199254740991LL);
  LH_CHECK(bson_iter_init_find(&it, &doc, "d") && bson_iter_int64(&it) == -2147483649LL);
  /* BSON numbers of every width come back as Lua numbers. */
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), 0);
  lua_getfield(L, -1, "e");
  LH_CHECK(lua_tonumber(L, -1) == 9007199254740991.0);
  lua_getfield(L, -2, "j");
  LH_CHECK(lua_tonumber(L, -1) == 0 && signbit(lua_tonumber(L, -1)));
  lua_getfield(L, -3, "n");
  LH_CHECK(isnan(lua_tonumber(L, -1)));
  lua_pop(L, 4);
  bson_destroy(&doc);
  lua_close(L);
}

static void test_arrays(void) {
  lua_State *L = new_state();
  bson_t doc;
  char err[128];
  /* Sparse or zero-based tables are documents, so they need string keys and fail. */
  LH_CHECK_INT(to_bson(L, "return { a = {1, 2, nil, 4} }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { a = {[0] = 1} }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  /* Marked arrays and plain sequences become arrays with keys "0", "1", ... */
  LH_CHECK_INT(to_bson(L, "return { a = arr({'x', 'y'}), b = {{}, {}} }", &doc, err, sizeof err),
               0);
  bson_iter_t it, child;
  LH_CHECK(bson_iter_init_find(&it, &doc, "a") && bson_iter_recurse(&it, &child));
  LH_CHECK(bson_iter_next(&child) && strcmp(bson_iter_key(&child), "0") == 0);
  LH_CHECK(bson_iter_next(&child) && strcmp(bson_iter_key(&child), "1") == 0);
  LH_CHECK(!bson_iter_next(&child));
  LH_CHECK_INT(type_of(&doc, "b"), BSON_TYPE_ARRAY);
  bson_destroy(&doc);
  /* An empty array round-trips as an array, and an empty document as a document. */
  bson_t src = BSON_INITIALIZER, sub;
  BSON_APPEND_ARRAY_BEGIN(&src, "e", &sub);
  bson_append_array_end(&src, &sub);
  LH_CHECK_INT(lh_bson_to_lua(L, &src), 0);
  lua_setglobal(L, "t");
  LH_CHECK(eval(L, "return is_arr(t.e) and next(t.e) == nil") == 0 && lua_toboolean(L, -1));
  lua_pop(L, 1);
  bson_init(&doc);
  lua_getglobal(L, "t");
  LH_CHECK_INT(lh_bson_from_lua(L, -1, &doc, err, sizeof err), 0);
  lua_pop(L, 1);
  LH_CHECK_INT(type_of(&doc, "e"), BSON_TYPE_ARRAY);
  LH_CHECK(bson_equal(&doc, &src));
  bson_destroy(&doc);
  bson_destroy(&src);
  lua_close(L);
}

static void test_objectid(void) {
  lua_State *L = new_state();
  LH_CHECK(eval(L, "local a, e = m.objectid('5f1a2b3c4d5e6f7a8b9c0d1')\n"
                   "assert(a == nil and e == 'bad_value')\n"
                   "a, e = m.objectid('5f1a2b3c4d5e6f7a8b9c0d1z')\n"
                   "assert(a == nil and e == 'bad_value')\n"
                   "a, e = m.objectid('5f1a2b3c4d5e6f7a8b9c0d1e0')\n"
                   "assert(a == nil and e == 'bad_value')\n"
                   "a, e = m.objectid('')\n"
                   "assert(a == nil and e == 'bad_value')\n"
                   "a, e = m.objectid('5f1a2b3c4d5e6f7a8b9c0d1\\0')\n"
                   "assert(a == nil and e == 'bad_value')\n"
                   "local x, y = m.objectid(), m.objectid()\n"
                   "assert(x ~= y and #tostring(x) == 24)\n"
                   "assert(m.objectid(tostring(x)) == x)\n"
                   "assert(m.objectid(x) == x)\n"
                   "assert(not pcall(m.objectid, {}))\n"
                   "assert(getmetatable(x) == false)\n"
                   "return true") == 0 &&
           lua_toboolean(L, -1));
  lua_close(L);
}

static void test_dates_and_regex(void) {
  lua_State *L = new_state();
  LH_CHECK(eval(L, "assert(tostring(m.date(0)) == '1970-01-01T00:00:00.000Z')\n"
                   "assert(tostring(m.date(-1)) == '1969-12-31T23:59:59.999Z')\n"
                   "assert(tostring(m.date(951782400000)) == '2000-02-29T00:00:00.000Z')\n"
                   "local n = m.now():ms()\n"
                   "assert(n > 1.7e12 and n == math.floor(n))\n"
                   "assert(m.date(1) < m.date(2) and m.date(2) <= m.date(2))\n"
                   "assert(not pcall(m.date, 1.5))\n"
                   "assert(not pcall(m.regex, 'a', 'q'))\n"
                   "assert(tostring(m.regex('a')) == '/a/')\n"
                   "return true") == 0 &&
           lua_toboolean(L, -1));
  char buf[40];
  LH_CHECK_INT(lh_bson_format_date(253402300800000LL, buf, sizeof buf), LH_EINVAL); /* year 10000 */
  LH_CHECK_INT(lh_bson_format_date(253402300799999LL, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "9999-12-31T23:59:59.999Z");
  lua_close(L);
}

static void test_nesting_limit(void) {
  lua_State *L = new_state();
  bson_t doc;
  char err[128];
  /* The top-level document is depth 1, so 63 nested tables still fit within 64 levels. */
  LH_CHECK_INT(to_bson(L,
                       "local t = {} local top = t for i = 1, 63 do t.x = {} t = t.x end "
                       "return top",
                       &doc, err, sizeof err),
               0);
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), 0);
  lua_pop(L, 1);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L,
                       "local t = {} local top = t for i = 1, 64 do t.x = {} t = t.x end "
                       "return top",
                       &doc, err, sizeof err),
               LH_EINVAL);
  LH_CHECK(strstr(err, "nesting") != NULL);
  bson_destroy(&doc);
  /* A cycle is caught by the same limit instead of looping forever. */
  LH_CHECK_INT(to_bson(L, "local t = {} t.self = t return t", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  /* BSON nested deeper than the limit is refused on the way in and leaves the stack alone. */
  bson_t *levels[80];
  levels[0] = bson_new();
  for (int i = 1; i < 80; i++) {
    levels[i] = bson_new();
  }
  /* Build from the inside out: levels[i] = { x = levels[i+1] }. */
  for (int i = 78; i >= 0; i--) {
    BSON_APPEND_DOCUMENT(levels[i], "x", levels[i + 1]);
  }
  int top = lua_gettop(L);
  LH_CHECK_INT(lh_bson_to_lua(L, levels[0]), LH_ELIMIT);
  LH_CHECK_INT(lua_gettop(L), top);
  LH_CHECK_INT(lh_bson_to_lua(L, levels[20]), 0); /* 60 levels */
  lua_pop(L, 1);
  for (int i = 0; i < 80; i++) {
    bson_destroy(levels[i]);
  }
  lua_close(L);
}

static void test_rejected_keys_and_values(void) {
  lua_State *L = new_state();
  bson_t doc;
  char err[128];
  LH_CHECK_INT(to_bson(L, "return { [1] = 'a', b = 1 }", &doc, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "non-string key") != NULL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { x = { [true] = 1 } }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { 1, 2 }", &doc, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "top level") != NULL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return arr({})", &doc, err, sizeof err), 0); /* empty: {} */
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { f = print }", &doc, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "at key f") != NULL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { ['a\\0b'] = 1 }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { s = '\\255\\254' }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  /* the overlong NUL of "modified UTF-8" is not UTF-8 */
  LH_CHECK_INT(to_bson(L, "return { s = 'a\\192\\128b' }", &doc, err, sizeof err), LH_EINVAL);
  bson_destroy(&doc);
  LH_CHECK_INT(to_bson(L, "return { c = coroutine.create(print) }", &doc, err, sizeof err),
               LH_EINVAL);
  bson_destroy(&doc);
  bson_init(&doc);
  lua_pushnumber(L, 1);
  LH_CHECK_INT(lh_bson_from_lua(L, -1, &doc, err, sizeof err), LH_EINVAL);
  lua_pop(L, 1);
  bson_destroy(&doc);
  lua_close(L);
}

/* Types Lua has no twin for still convert to something sensible and never crash. */
static void test_other_bson_types(void) {
  lua_State *L = new_state();
  bson_t doc = BSON_INITIALIZER;
  const uint8_t bin[3] = {1, 0, 2};
  bson_decimal128_t dec;
  bson_decimal128_from_string("1.25", &dec);
  BSON_APPEND_BINARY(&doc, "bin", BSON_SUBTYPE_BINARY, bin, 3);
  BSON_APPEND_DECIMAL128(&doc, "dec", &dec);
  BSON_APPEND_MINKEY(&doc, "min");
  BSON_APPEND_MAXKEY(&doc, "max");
  BSON_APPEND_UNDEFINED(&doc, "undef");
  BSON_APPEND_TIMESTAMP(&doc, "ts", 1, 2);
  BSON_APPEND_CODE(&doc, "code", "function() {}");
  BSON_APPEND_SYMBOL(&doc, "sym", "s");
  BSON_APPEND_INT64(&doc, "i64", 5000000000LL);
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), 0);
  lua_setglobal(L, "t");
  LH_CHECK(eval(L, "assert(t.bin == '\\1\\0\\2' and t.dec == '1.25')\n"
                   "assert(t.min == 'MinKey' and t.max == 'MaxKey' and t.undef == null)\n"
                   "assert(t.ts == 2^32 + 2 and t.code == 'function() {}' and t.sym == 's')\n"
                   "assert(t.i64 == 5000000000)\n"
                   "return true") == 0 &&
           lua_toboolean(L, -1));
  lua_pop(L, 1);
  /* A corrupt document is refused, not read. */
  uint8_t bad[8] = {8, 0, 0, 0, 0x10, 'a', 0, 0};
  bson_t corrupt;
  LH_CHECK(!bson_init_static(&corrupt, bad, sizeof bad) || lh_bson_to_lua(L, &corrupt) != 0 ||
           (lua_pop(L, 1), 1));
  bson_destroy(&doc);
  lua_close(L);
}

/* A corrupt element (here a string whose length runs past the document) fails the conversion:
 * it must not read as the end of the document and yield the fields before it with success. */
static void test_corrupt_element_is_an_error(void) {
  lua_State *L = new_state();
  /* {a: 1, n: <string of length 1000 in a 22-byte document>} */
  const uint8_t top[22] = {22,   0,   0, 0,    0x10, 'a', 0, 1,   0,   0, 0,
                           0x02, 'n', 0, 0xe8, 3,    0,   0, 'h', 'i', 0, 0};
  /* {d: {a: 1, n: <the same string>}}: the corruption one level down */
  const uint8_t nested[30] = {30, 0, 0, 0,    0x03, 'd', 0,    22, 0, 0, 0,   0x10, 'a', 0, 1,
                              0,  0, 0, 0x02, 'n',  0,   0xe8, 3,  0, 0, 'h', 'i',  0,   0, 0};
  bson_t doc;
  LH_CHECK(bson_init_static(&doc, top, sizeof top));
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), LH_EINVAL);
  LH_CHECK_INT(lua_gettop(L), 0);
  LH_CHECK(bson_init_static(&doc, nested, sizeof nested));
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), LH_EINVAL);
  LH_CHECK_INT(lua_gettop(L), 0);
  lua_close(L);
}

/* A stored string that is not UTF-8 reads as U+FFFD per bad byte, so the table converts back (the
 * Lua -> BSON direction refuses invalid UTF-8); a key that is not UTF-8 fails the conversion. */
static void test_invalid_utf8_from_the_database(void) {
  lua_State *L = new_state();
  bson_t doc = BSON_INITIALIZER;
  bson_append_utf8(&doc, "name", 4, "he\x94\x8fo", 5);
  bson_append_code(&doc, "code", 4,
                   "a\xff"
                   "b");
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), 0);
  lua_getfield(L, -1, "name");
  LH_CHECK_STR(lua_tostring(L, -1), "he\xef\xbf\xbd\xef\xbf\xbd"
                                    "o");
  lua_pop(L, 1);
  bson_t back;
  char why[128];
  bson_init(&back);
  LH_CHECK_INT(lh_bson_from_lua(L, -1, &back, why, sizeof why), 0);
  bson_destroy(&back);
  lua_pop(L, 1);
  bson_destroy(&doc);
  bson_init(&doc);
  bson_append_int32(&doc, "k\xff", 2, 1);
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), LH_EINVAL);
  LH_CHECK_INT(lua_gettop(L), 0);
  bson_destroy(&doc);
  /* In an array too, though its keys are otherwise ignored. */
  bson_t arr;
  bson_init(&doc);
  bson_append_array_begin(&doc, "a", 1, &arr);
  bson_append_int32(&arr, "0\xb9", 2, 1);
  bson_append_array_end(&doc, &arr);
  LH_CHECK_INT(lh_bson_to_lua(L, &doc), LH_EINVAL);
  LH_CHECK_INT(lua_gettop(L), 0);
  bson_destroy(&doc);
  lua_close(L);
}

int main(void) {
  LH_RUN(test_invalid_utf8_from_the_database);
  LH_RUN(test_corrupt_element_is_an_error);
  LH_RUN(test_round_trip_all_types);
  LH_RUN(test_number_types);
  LH_RUN(test_arrays);
  LH_RUN(test_objectid);
  LH_RUN(test_dates_and_regex);
  LH_RUN(test_nesting_limit);
  LH_RUN(test_rejected_keys_and_values);
  LH_RUN(test_other_bson_types);
  return lh_test_done();
}
