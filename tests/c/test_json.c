/* test_json.c: unit tests of strict JSON decoding, encoding and form decoding (host/json.c), and a
 * measurement of the encode cost of a typical user-list response. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "lh.h"
#include "lh_test.h"

static char err[256];

/* A fresh state with the module loaded as the global `json`, for Lua-side fixtures. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushcfunction(L, luaopen_luahost_json);
  lua_call(L, 0, 1);
  lua_setglobal(L, "json");
  return L;
}

/* Runs a Lua chunk that returns one value and leaves it on the stack. */
static void eval(lua_State *L, const char *chunk) {
  if (luaL_dostring(L, chunk) != 0) {
    fprintf(stderr, "  Lua error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushnil(L);
  }
}

/* Decodes input, which must be rejected, and checks the reason contains want. */
static int rejects(const char *input, size_t len, const char *want) {
  lua_State *L = new_state();
  err[0] = '\0';
  int rc = lh_json_decode(L, input, len, err, sizeof(err));
  int ok = rc == LH_EINVAL && lua_gettop(L) == 0 && strstr(err, want) != NULL;
  if (!ok)
    fprintf(stderr, "  decode of [%.*s]: rc %d, err \"%s\", wanted \"%s\"\n",
            (int)(len > 60 ? 60 : len), input, rc, err, want);
  lua_close(L);
  return ok;
}

#define REJECTS(s, want) rejects(s, sizeof(s) - 1, want)

/* Decodes input and encodes the result again; checks the output equals want. */
static int round_trips(const char *input, const char *want) {
  lua_State *L = new_state();
  lh_buf_t b;
  lh_buf_init(&b);
  int ok = 0;
  if (lh_json_decode(L, input, strlen(input), err, sizeof(err)) != 0) {
    fprintf(stderr, "  decode of [%s] failed: %s\n", input, err);
  } else if (lh_json_encode(L, -1, &b, err, sizeof(err)) != 0) {
    fprintf(stderr, "  encode failed: %s\n", err);
  } else {
    ok = b.len == strlen(want) && memcmp(b.data, want, b.len) == 0 && lua_gettop(L) == 1;
    if (!ok)
      fprintf(stderr, "  [%s] encoded again as [%s], expected [%s]\n", input, b.data, want);
  }
  lh_buf_free(&b);
  lua_close(L);
  return ok;
}

/* Encodes the value a Lua chunk returns; checks the output (want) or the error (want_err). */
static int encodes(const char *chunk, const char *want, const char *want_err) {
  lua_State *L = new_state();
  lh_buf_t b;
  lh_buf_init(&b);
  eval(L, chunk);
  err[0] = '\0';
  int rc = lh_json_encode(L, -1, &b, err, sizeof(err));
  int ok;
  if (want_err)
    ok = rc == LH_EINVAL && strstr(err, want_err) != NULL;
  else
    ok = rc == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
  ok = ok && lua_gettop(L) == 1;
  if (!ok)
    fprintf(stderr, "  encode of `%s`: rc %d, out [%s], err \"%s\"\n", chunk, rc,
            b.data ? b.data : "", err);
  lh_buf_free(&b);
  lua_close(L);
  return ok;
}

/* Decodes a form; checks that the Lua expression `check` (with the table as `t`) is true. */
static int form_ok(const char *input, const char *check) {
  lua_State *L = new_state();
  int ok = 0;
  if (lh_form_decode(L, input, strlen(input), err, sizeof(err)) != 0) {
    fprintf(stderr, "  form [%s] failed: %s\n", input, err);
  } else {
    lua_setglobal(L, "t");
    char chunk[512];
    snprintf(chunk, sizeof(chunk), "return %s", check);
    eval(L, chunk);
    ok = lua_toboolean(L, -1) && lua_gettop(L) == 1;
    if (!ok)
      fprintf(stderr, "  form [%s]: `%s` is not true\n", input, check);
  }
  lua_close(L);
  return ok;
}

static int form_rejects(const char *input, size_t len, const char *want) {
  lua_State *L = new_state();
  err[0] = '\0';
  int rc = lh_form_decode(L, input, len, err, sizeof(err));
  int ok = rc == LH_EINVAL && lua_gettop(L) == 0 && strcmp(err, want) == 0;
  if (!ok)
    fprintf(stderr, "  form [%s]: rc %d, err \"%s\", wanted \"%s\"\n", input, rc, err, want);
  lua_close(L);
  return ok;
}

#define FORM_REJECTS(s, want) form_rejects(s, sizeof(s) - 1, want)

/* --- decode rejections ------------------------------------------------------------------- */

static void test_decode_rejects_duplicate_keys(void) {
  LH_CHECK(
      REJECTS("{\"a\":1,\"a\":2}", "invalid JSON at line 1 column 10: duplicate object key 'a'"));
  LH_CHECK(REJECTS("{\"x\":{\"b\":1,\"b\":1}}", "duplicate object key 'b'"));
}

static void test_decode_rejects_nan(void) {
  LH_CHECK(REJECTS("NaN", "invalid JSON at line 1"));
  LH_CHECK(REJECTS("[NaN]", "invalid token"));
}

static void test_decode_rejects_infinity(void) {
  LH_CHECK(REJECTS("Infinity", "invalid token"));
  LH_CHECK(REJECTS("[Infinity]", "invalid token"));
  LH_CHECK(REJECTS("-Infinity", "invalid token"));
  LH_CHECK(REJECTS("1e400", "real number overflow"));
}

static void test_decode_rejects_hex(void) {
  LH_CHECK(REJECTS("0x10", "invalid JSON"));
  LH_CHECK(REJECTS("[0x10]", "invalid JSON"));
  LH_CHECK(REJECTS("01", "invalid JSON"));
}

static void test_decode_rejects_nul_escape(void) {
  LH_CHECK(REJECTS("\"a\\u0000b\"", "\\u0000 is not allowed"));
  LH_CHECK(REJECTS("{\"a\\u0000\":1}", "NUL byte in object key"));
}

static void test_decode_rejects_raw_nul(void) {
  LH_CHECK(REJECTS("\"a\0b\"", "invalid JSON"));
  LH_CHECK(REJECTS("[1]\0", "invalid JSON"));
}

static void test_decode_rejects_invalid_utf8(void) {
  LH_CHECK(REJECTS("\"\xff\"", "unable to decode byte 0xff"));
  LH_CHECK(REJECTS("\"\x80\"", "unable to decode byte 0x80"));
  LH_CHECK(REJECTS("\"\xc3\"", "invalid JSON"));
}

static void test_decode_rejects_overlong_utf8(void) {
  LH_CHECK(REJECTS("\"\xc0\xaf\"", "unable to decode byte 0xc0"));
  LH_CHECK(REJECTS("\"\xe0\x80\xaf\"", "invalid JSON"));
}

static void test_decode_rejects_lone_surrogates(void) {
  LH_CHECK(REJECTS("\"\\ud800\"", "invalid Unicode '\\uD800'"));
  LH_CHECK(REJECTS("\"\\udc00\"", "invalid Unicode '\\uDC00'"));
  LH_CHECK(REJECTS("\"\xed\xa0\x80\"", "invalid JSON")); /* surrogate encoded as UTF-8 */
}

static void test_decode_rejects_raw_control_chars(void) {
  LH_CHECK(REJECTS("\"a\tb\"", "control character 0x9"));
}

static char *nested(size_t depth, char open, char close) {
  char *s = malloc(2 * depth + 1);
  memset(s, open, depth);
  memset(s + depth, close, depth);
  s[2 * depth] = '\0';
  return s;
}

static void test_decode_depth_64_ok(void) {
  char *s = nested(64, '[', ']');
  lua_State *L = new_state();
  LH_CHECK_INT(lh_json_decode(L, s, strlen(s), err, sizeof(err)), 0);
  LH_CHECK_INT(lua_gettop(L), 1);
  lua_close(L);
  free(s);
}

static void test_decode_depth_65_rejected(void) {
  char *s = nested(65, '[', ']');
  LH_CHECK(rejects(s, strlen(s), "JSON nesting deeper than 64 levels"));
  free(s);
  /* Objects count too, and brackets inside strings do not. */
  LH_CHECK(REJECTS("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                   "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                   "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                   "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                   "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":"
                   "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1",
                   "nesting deeper"));
  static char inside[300];
  inside[0] = '"';
  memset(inside + 1, '[', 200);
  strcpy(inside + 201, "\\\"[\"");
  lua_State *L = new_state();
  LH_CHECK_INT(lh_json_decode(L, inside, strlen(inside), err, sizeof(err)), 0);
  LH_CHECK(lua_isstring(L, -1) && lua_objlen(L, -1) == 202);
  lua_close(L);
}

static void test_decode_depth_100000_rejected(void) {
  char *s = malloc(100001);
  memset(s, '[', 100000);
  s[100000] = '\0';
  LH_CHECK(rejects(s, 100000, "JSON nesting deeper than 64 levels"));
  free(s);
}

static void test_decode_rejects_trailing_garbage(void) {
  LH_CHECK(REJECTS("[1] x", "end of file expected"));
  LH_CHECK(REJECTS("{} {}", "end of file expected"));
  LH_CHECK(REJECTS("1 2", "end of file expected"));
}

static void test_decode_rejects_empty_input(void) {
  LH_CHECK(REJECTS("", "invalid JSON: empty input"));
  LH_CHECK(REJECTS(" \r\n\t", "invalid JSON: empty input"));
}

static void test_decode_rejects_huge_integers(void) {
  LH_CHECK(REJECTS("9007199254740992", "outside the exactly representable range"));
  LH_CHECK(REJECTS("[-9007199254740993]", "outside the exactly representable range"));
  LH_CHECK(REJECTS("12345678901234567890123", "too big integer"));
}

static void test_decode_rejects_syntax_errors(void) {
  LH_CHECK(REJECTS("[1,]", "invalid JSON at line 1 column 4"));
  LH_CHECK(REJECTS("{\"a\" 1}", "':' expected"));
  LH_CHECK(REJECTS("\"abc", "premature end of input"));
  LH_CHECK(REJECTS("{'a':1}", "invalid JSON"));
  LH_CHECK(REJECTS("[1,\n2,\nx]", "invalid JSON at line 3"));
}

/* --- decode values ----------------------------------------------------------------------- */

static void test_decode_values(void) {
  lua_State *L = new_state();
  const char *doc = "{\"s\":\"h\\u00e9\",\"i\":-42,\"r\":1.5,\"t\":true,\"f\":false,\"n\":null,"
                    "\"a\":[1,\"x\"],\"o\":{},\"big\":9007199254740991}";
  LH_CHECK_INT(lh_json_decode(L, doc, strlen(doc), err, sizeof(err)), 0);
  lua_setglobal(L, "v");
  eval(L, "return v.s == 'h\\195\\169' and v.i == -42 and v.r == 1.5 and v.t == true and "
          "v.f == false and v.n == json.null and #v.a == 2 and v.a[2] == 'x' and "
          "json.is_array(v.a) and not json.is_array(v.o) and next(v.o) == nil and "
          "v.big == 2^53 - 1");
  LH_CHECK(lua_toboolean(L, -1));
  lua_close(L);
}

static void test_decode_scalars_at_top_level(void) {
  lua_State *L = new_state();
  LH_CHECK_INT(lh_json_decode(L, "\"x\"", 3, err, sizeof(err)), 0);
  LH_CHECK_STR(lua_tostring(L, -1), "x");
  LH_CHECK_INT(lh_json_decode(L, " 12 ", 4, err, sizeof(err)), 0);
  LH_CHECK(lua_tonumber(L, -1) == 12);
  LH_CHECK_INT(lh_json_decode(L, "null", 4, err, sizeof(err)), 0);
  LH_CHECK(lua_islightuserdata(L, -1) && lua_touserdata(L, -1) == NULL);
  LH_CHECK_INT(lua_gettop(L), 3);
  lua_close(L);
}

/* --- round trips ------------------------------------------------------------------------- */

static void test_round_trip_empty_array(void) {
  LH_CHECK(round_trips("[]", "[]"));
  LH_CHECK(round_trips("{\"a\":[]}", "{\"a\":[]}"));
}

static void test_round_trip_empty_object(void) {
  LH_CHECK(round_trips("{}", "{}"));
  LH_CHECK(round_trips("[{}]", "[{}]"));
}

static void test_round_trip_nested(void) {
  LH_CHECK(round_trips(" { \"b\" : [ 1 , { \"c\" : [ [ ] ] } ] , \"a\" : true } ",
                       "{\"a\":true,\"b\":[1,{\"c\":[[]]}]}"));
}

static void test_round_trip_null_in_arrays(void) {
  LH_CHECK(round_trips("[null,1,null]", "[null,1,null]"));
  LH_CHECK(round_trips("[null]", "[null]"));
  LH_CHECK(round_trips("{\"a\":null}", "{\"a\":null}"));
}

static void test_round_trip_unicode(void) {
  LH_CHECK(
      round_trips("\"\\u00e9\\u20ac\\ud83d\\ude00\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
  LH_CHECK(round_trips("\"\xc3\xa9\"", "\"\xc3\xa9\""));
  LH_CHECK(round_trips("\"\\u2028\"", "\"\\u2028\""));
}

static void test_round_trip_control_chars(void) {
  LH_CHECK(round_trips("\"\\n\\r\\t\\b\\f\\u0001\\u001F\\\"\\\\\\/\"",
                       "\"\\n\\r\\t\\b\\f\\u0001\\u001f\\\"\\\\/\""));
}

static void test_round_trip_numbers(void) {
  LH_CHECK(round_trips("[0,-0,1,-1,1.5,0.1,1e3,-2.5e-7,9007199254740991,1e300]",
                       "[0,0,1,-1,1.5,0.1,1000,-2.5e-07,9007199254740991,1e+300]"));
}

/* --- encoding ---------------------------------------------------------------------------- */

static void test_encode_scalars(void) {
  LH_CHECK(encodes("return 'x'", "\"x\"", NULL));
  LH_CHECK(encodes("return true", "true", NULL));
  LH_CHECK(encodes("return json.null", "null", NULL));
  LH_CHECK(encodes("return nil", "null", NULL));
  LH_CHECK(encodes("return 1/3", "0.33333333333333331", NULL));
  LH_CHECK(encodes("return -2^53 + 1", "-9007199254740991", NULL));
  /* Integral values past the safe range print as reals: decoding refuses such integers. */
  LH_CHECK(encodes("return -2^62", "-4.6116860184273879e+18", NULL));
  LH_CHECK(encodes("return 2^63", "9.2233720368547758e+18", NULL));
}

static void test_encode_arrays(void) {
  LH_CHECK(encodes("return json.array()", "[]", NULL));
  LH_CHECK(encodes("return {}", "{}", NULL));
  LH_CHECK(encodes("return {1, 'a', true}", "[1,\"a\",true]", NULL));
  LH_CHECK(encodes("return json.array({1, json.null, 3})", "[1,null,3]", NULL));
  LH_CHECK(encodes("return {[2] = 'b', [1] = 'a'}", "[\"a\",\"b\"]", NULL));
}

static void test_encode_sorted_keys(void) {
  LH_CHECK(encodes("return {zeta = 1, alpha = 2, mid = {b = 1, a = 2}, al = 3}",
                   "{\"al\":3,\"alpha\":2,\"mid\":{\"a\":2,\"b\":1},\"zeta\":1}", NULL));
  /* More keys than the insertion sort handles: qsort. */
  LH_CHECK(encodes("local t = {} for i = 20, 1, -1 do t[string.char(96 + i)] = i end return t",
                   "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,"
                   "\"j\":10,\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,\"p\":16,\"q\":17,"
                   "\"r\":18,\"s\":19,\"t\":20}",
                   NULL));
}

static void test_encode_large_object(void) {
  /* More keys than the Lua stack keeps: values are looked up again by key. */
  lua_State *L = new_state();
  eval(L, "local t = {} for i = 1, 6000 do t[string.format('k%05d', i)] = {i} end return t");
  lh_buf_t b;
  lh_buf_init(&b);
  LH_CHECK_INT(lh_json_encode(L, -1, &b, err, sizeof(err)), 0);
  LH_CHECK(b.len > 0 && strncmp(b.data, "{\"k00001\":[1],\"k00002\":[2],", 27) == 0);
  LH_CHECK(strstr(b.data, "\"k06000\":[6000]}") != NULL);
  LH_CHECK_INT(lua_gettop(L), 1);
  lua_pop(L, 1);
  LH_CHECK_INT(lh_json_decode(L, b.data, b.len, err, sizeof(err)), 0);
  lh_buf_free(&b);
  lua_close(L);
}

static void test_encode_nested_objects_past_the_inline_entries(void) {
  /* The entries of every open level share one stack that starts inline: an inner object that
   * outgrows it moves the outer level's entries to the heap, which must keep them in order. */
  lua_State *L = new_state();
  eval(L, "local t = {} for i = 1, 40 do t[string.format('a%02d', i)] = i end "
          "local inner = {} for i = 1, 30 do inner[string.format('b%02d', i)] = i end "
          "t.m = inner t.z = 'last' return t");
  lh_buf_t b;
  lh_buf_init(&b);
  LH_CHECK_INT(lh_json_encode(L, -1, &b, err, sizeof(err)), 0);
  LH_CHECK(b.len > 0 && strncmp(b.data, "{\"a01\":1,\"a02\":2,", 17) == 0);
  LH_CHECK(strstr(b.data, "\"a40\":40,\"m\":{\"b01\":1,") != NULL);
  LH_CHECK(strstr(b.data, "\"b30\":30},\"z\":\"last\"}") != NULL);
  lh_buf_free(&b);
  lua_close(L);
}

static void test_encode_escapes_strings(void) {
  LH_CHECK(encodes("return {['k\"'] = 'a\\nb\\0'}", "{\"k\\\"\":\"a\\nb\\u0000\"}", NULL));
  LH_CHECK(encodes("return '\\255'", "\"\xef\xbf\xbd\"", NULL));
}

static void test_encode_rejects_nan(void) {
  LH_CHECK(encodes("return 0/0", NULL, "cannot encode NaN"));
  LH_CHECK(encodes("return {a = {0/0}}", NULL, "cannot encode NaN at a[1]"));
}

static void test_encode_rejects_inf(void) {
  LH_CHECK(encodes("return 1/0", NULL, "cannot encode Infinity"));
  LH_CHECK(encodes("return {-1/0}", NULL, "cannot encode -Infinity at [1]"));
}

static void test_encode_rejects_function(void) {
  LH_CHECK(encodes("return {users = {{name = print}}}", NULL,
                   "cannot encode a function at users[1].name"));
  LH_CHECK(encodes("return coroutine.create(print)", NULL, "cannot encode a thread"));
  LH_CHECK(encodes("return io.stdout", NULL, "cannot encode a userdata"));
}

static void test_encode_rejects_cycles(void) {
  LH_CHECK(encodes("local t = {} t.self = t return t", NULL, "nesting too deep or cyclic"));
  LH_CHECK(encodes("local t = json.array() t[1] = t return t", NULL, "nesting too deep or cyclic"));
}

static void test_encode_depth_limit(void) {
  /* 64 tables deep encodes; 65 does not. */
  char want[200];
  memset(want, '[', 63);
  memcpy(want + 63, "{}", 2);
  memset(want + 65, ']', 63);
  want[128] = '\0';
  LH_CHECK(encodes("local t = {} for i = 1, 63 do t = {t} end return t", want, NULL));
  LH_CHECK(encodes("local t = {} for i = 1, 64 do t = {t} end return t", NULL, "nesting too deep"));
}

static void test_encode_rejects_mixed_keys(void) {
  LH_CHECK(encodes("return {1, 2, a = 3}", NULL, "both string and numeric keys"));
  LH_CHECK(encodes("return {a = 3, [1] = 2}", NULL, "both string and numeric keys"));
}

static void test_encode_rejects_bad_keys(void) {
  LH_CHECK(encodes("return {[1] = 1, [3] = 3}", NULL, "sparse array"));
  LH_CHECK(encodes("return {[1.5] = 1}", NULL, "numeric key"));
  LH_CHECK(encodes("return {[0] = 1}", NULL, "numeric key"));
  LH_CHECK(encodes("return {[true] = 1}", NULL, "key of type boolean"));
}

static void test_encode_leaves_stack_balanced(void) {
  lua_State *L = new_state();
  eval(L, "return {a = {1, 2, {b = 'c'}}, d = json.array()}");
  lua_pushinteger(L, 7);
  lh_buf_t b;
  lh_buf_init(&b);
  LH_CHECK_INT(lh_json_encode(L, -2, &b, err, sizeof(err)), 0);
  LH_CHECK_STR(b.data, "{\"a\":[1,2,{\"b\":\"c\"}],\"d\":[]}");
  LH_CHECK_INT(lua_gettop(L), 2);
  LH_CHECK(lua_tonumber(L, -1) == 7);
  lh_buf_free(&b);
  lua_close(L);
}

/* --- form decoding ----------------------------------------------------------------------- */

static void test_form_basic(void) {
  LH_CHECK(form_ok("a=1&b=two", "t.a == '1' and t.b == 'two'"));
  LH_CHECK(form_ok("", "next(t) == nil"));
}

static void test_form_plus_and_percent(void) {
  LH_CHECK(form_ok("q=hello+world%21&n%61me=%C3%A9",
                   "t.q == 'hello world!' and t.name == '\\195\\169'"));
  LH_CHECK(form_ok("x=%2B%26%3D", "t.x == '+&='"));
}

static void test_form_empty_pairs_and_values(void) {
  LH_CHECK(
      form_ok("a&&b=&&", "t.a == '' and t.b == '' and select('#', next(t, next(t, nil))) == 2"));
  LH_CHECK(form_ok("&", "next(t) == nil"));
}

static void test_form_repeated(void) {
  LH_CHECK(FORM_REJECTS("limit=1&limit=2", "field 'limit' appears more than once"));
  LH_CHECK(FORM_REJECTS("a=1&%61=2", "field 'a' appears more than once"));
}

static void test_form_invalid_escapes(void) {
  LH_CHECK(FORM_REJECTS("a=%zz", "invalid percent-encoding in field 'a'"));
  LH_CHECK(FORM_REJECTS("a=%4", "invalid percent-encoding in field 'a'"));
  LH_CHECK(FORM_REJECTS("a=%", "invalid percent-encoding in field 'a'"));
  LH_CHECK(FORM_REJECTS("b%=1", "invalid percent-encoding in the name of field 'b%'"));
}

static void test_form_nul(void) {
  LH_CHECK(FORM_REJECTS("a=x%00y", "NUL byte in field 'a'"));
  LH_CHECK(FORM_REJECTS("a%00=1", "NUL byte in the name of field 'a%00'"));
  LH_CHECK(FORM_REJECTS("a=x\0y", "NUL byte in field 'a'"));
}

static void test_form_invalid_utf8(void) {
  LH_CHECK(FORM_REJECTS("a=%FF", "invalid UTF-8 in field 'a'"));
  LH_CHECK(FORM_REJECTS("a=%C0%AF", "invalid UTF-8 in field 'a'"));
  LH_CHECK(FORM_REJECTS("%ED%A0%80=1", "invalid UTF-8 in the name of field '%ED%A0%80'"));
}

static void test_form_missing_equals(void) {
  LH_CHECK(form_ok("flag&x=1", "t.flag == '' and t.x == '1'"));
}

static void test_form_empty_name(void) {
  LH_CHECK(FORM_REJECTS("=1", "empty field name"));
}

static void test_form_large_input(void) {
  /* Larger than the on-stack scratch area. */
  char *s = malloc(4000);
  strcpy(s, "k=");
  memset(s + 2, 'v', 3000);
  strcpy(s + 3002, "&z=%41");
  LH_CHECK(form_ok(s, "#t.k == 3000 and t.z == 'A'"));
  free(s);
}

/* --- measurement ------------------------------------------------------------------------- */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Encodes a typical list response: an envelope around 10 users of 6 fields. */
static void test_encode_benchmark(void) {
  lua_State *L = new_state();
  eval(L, "local users = json.array() "
          "for i = 1, 10 do users[i] = {id = string.format('65f1c0a2b3c4d5e6f70819%02d', i), "
          "username = 'user' .. i, userage = 20 + i, role = i == 1 and 'admin' or 'user', "
          "created_at = '2024-03-13T09:15:42Z', updated_at = '2024-03-14T10:00:00Z'} end "
          "return {ok = true, data = {users = users, total = 10, page = 1}}");
  lh_buf_t b;
  lh_buf_init(&b);
  int iters = 100000;
  for (int i = 0; i < 1000; i++) {
    lh_buf_reset(&b);
    lh_json_encode(L, -1, &b, err, sizeof(err));
  }
  double t0 = now_ns();
  for (int i = 0; i < iters; i++) {
    lh_buf_reset(&b);
    lh_json_encode(L, -1, &b, err, sizeof(err));
  }
  double per = (now_ns() - t0) / iters;
  LH_CHECK(!b.failed && b.len > 0);
  printf("     encode of 10 users x 6 fields (%zu bytes): %.0f ns\n", b.len, per);
  lh_buf_free(&b);
  lua_close(L);
}

static void test_encode_refuses_invalid_utf8_keys(void) {
  lua_State *L = luaL_newstate();
  lua_newtable(L);
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "\xff");
  lua_pushinteger(L, 2);
  lua_setfield(L, -2, "\xfe");
  lh_buf_t out;
  lh_buf_init(&out);
  char why[160];
  LH_CHECK_INT(lh_json_encode(L, -1, &out, why, sizeof(why)), LH_EINVAL);
  LH_CHECK(strstr(why, "valid UTF-8") != NULL);
  lh_buf_free(&out);
  lua_close(L);
}

/* What the host encodes it decodes again, to the same encoding: integral values past +-2^53-1
 * (1e16, 2^53) carry an exponent or a fraction, since decoding refuses such integers. */
static void test_encoding_decodes_again(void) {
  const char *chunks[] = {"return 1e16",
                          "return 2^53",
                          "return -2^53 - 2",
                          "return 2^53 + 2",
                          "return {a = 12345678901234567}",
                          "return {}",
                          "return {x = {}}"};
  for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
    lua_State *L = new_state();
    lh_buf_t once, twice;
    lh_buf_init(&once);
    lh_buf_init(&twice);
    eval(L, chunks[i]);
    LH_CHECK_INT(lh_json_encode(L, -1, &once, err, sizeof(err)), 0);
    int rc = lh_json_decode(L, once.data, once.len, err, sizeof(err));
    if (rc != 0)
      fprintf(stderr, "  `%s` encoded as [%s] does not decode: %s\n", chunks[i], once.data, err);
    LH_CHECK_INT(rc, 0);
    if (rc == 0) {
      LH_CHECK_INT(lh_json_encode(L, -1, &twice, err, sizeof(err)), 0);
      LH_CHECK(once.len == twice.len && memcmp(once.data, twice.data, once.len) == 0);
    }
    lh_buf_free(&once);
    lh_buf_free(&twice);
    lua_close(L);
  }
  LH_CHECK(encodes("return 1e16", "1e+16", NULL));
  LH_CHECK(encodes("return 2^53", "9007199254740992.0", NULL));
}

/* A key holding NUL is refused, as decoding refuses \u0000 (jansson cannot read it either). */
static void test_encode_refuses_nul_in_keys(void) {
  LH_CHECK(encodes("return {['a\\0Q'] = 5}", NULL, "object key holding a NUL byte"));
  LH_CHECK(encodes("return {ok = {['\\0'] = 1}}", NULL, "a NUL byte at ok"));
}

/* The decoded-size bounds: values and estimated bytes, for JSON and forms, in C and through
 * json.decode / json.form_decode once the process-wide limits are set. */
static void test_decode_limits(void) {
  lua_State *L = new_state();
  lh_json_limits_t three = {3, 0};
  LH_CHECK_INT(lh_json_decode_limited(L, "[1,2]", 5, &three, err, sizeof(err)), 0);
  lua_pop(L, 1);
  LH_CHECK_INT(lh_json_decode_limited(L, "[1,2,3]", 7, &three, err, sizeof(err)), LH_ELIMIT);
  LH_CHECK_STR(err, "body too large when decoded: more than 3 values");
  LH_CHECK_INT(lua_gettop(L), 0);
  LH_CHECK_INT(lh_json_decode_limited(L, "{\"a\":{\"b\":[1]}}", 15, &three, err, sizeof(err)),
               LH_ELIMIT);
  LH_CHECK_INT(lua_gettop(L), 0);
  /* Bytes: many small keys cost far more in Lua than in the body. */
  lh_json_limits_t kb = {0, 1024};
  LH_CHECK_INT(lh_json_decode_limited(L, "{\"a\":\"x\"}", 9, &kb, err, sizeof(err)), 0);
  lua_pop(L, 1);
  char body[200];
  int n = snprintf(body, sizeof body, "{");
  for (int i = 0; i < 12; i++)
    n += snprintf(body + n, sizeof body - (size_t)n, "%s\"k%d\":{}", i ? "," : "", i);
  n += snprintf(body + n, sizeof body - (size_t)n, "}");
  LH_CHECK_INT(lh_json_decode_limited(L, body, (size_t)n, &kb, err, sizeof(err)), LH_ELIMIT);
  LH_CHECK_STR(err, "body too large when decoded: more than 1024 bytes");
  LH_CHECK_INT(lh_json_decode(L, body, (size_t)n, err, sizeof(err)), 0); /* unbounded */
  lua_pop(L, 1);
  /* Forms: a field is one value. */
  LH_CHECK_INT(lh_form_decode_limited(L, "a=1&b=2&c=3", 11, &three, err, sizeof(err)), 0);
  lua_pop(L, 1);
  LH_CHECK_INT(lh_form_decode_limited(L, "a=1&b=2&c=3&d=4", 15, &three, err, sizeof(err)),
               LH_ELIMIT);
  LH_CHECK_STR(err, "body too large when decoded: more than 3 values");
  LH_CHECK_INT(lh_form_decode_limited(L,
                                      "a="
                                      "0123456789012345678901234567890123456789",
                                      42, &kb, err, sizeof(err)),
               0);
  lua_pop(L, 1);
  LH_CHECK_INT(lua_gettop(L), 0);
  /* The Lua functions apply the process-wide limits and say which failure it is. */
  lh_json_set_body_limits(&three);
  eval(L, "local v, e, code = json.decode('[1,2,3]')\n"
          "local f, fe, fcode = json.form_decode('a&b&c&d')\n"
          "local _, _, bad = json.decode('[')\n"
          "return v == nil and code == 'too_large' and f == nil and fcode == 'too_large' and\n"
          "  bad == 'invalid' and e:find('more than 3 values', 1, true) ~= nil and\n"
          "  json.decode('[1,2]')[2] == 2");
  LH_CHECK(lua_toboolean(L, -1));
  lh_json_limits_t none = {0, 0};
  lh_json_set_body_limits(&none);
  lua_close(L);
}

int main(void) {
  LH_RUN(test_decode_limits);
  LH_RUN(test_encoding_decodes_again);
  LH_RUN(test_encode_refuses_nul_in_keys);
  LH_RUN(test_decode_rejects_duplicate_keys);
  LH_RUN(test_decode_rejects_nan);
  LH_RUN(test_decode_rejects_infinity);
  LH_RUN(test_decode_rejects_hex);
  LH_RUN(test_decode_rejects_nul_escape);
  LH_RUN(test_decode_rejects_raw_nul);
  LH_RUN(test_decode_rejects_invalid_utf8);
  LH_RUN(test_decode_rejects_overlong_utf8);
  LH_RUN(test_decode_rejects_lone_surrogates);
  LH_RUN(test_decode_rejects_raw_control_chars);
  LH_RUN(test_decode_depth_64_ok);
  LH_RUN(test_decode_depth_65_rejected);
  LH_RUN(test_decode_depth_100000_rejected);
  LH_RUN(test_decode_rejects_trailing_garbage);
  LH_RUN(test_decode_rejects_empty_input);
  LH_RUN(test_decode_rejects_huge_integers);
  LH_RUN(test_decode_rejects_syntax_errors);
  LH_RUN(test_decode_values);
  LH_RUN(test_decode_scalars_at_top_level);
  LH_RUN(test_round_trip_empty_array);
  LH_RUN(test_round_trip_empty_object);
  LH_RUN(test_round_trip_nested);
  LH_RUN(test_round_trip_null_in_arrays);
  LH_RUN(test_round_trip_unicode);
  LH_RUN(test_round_trip_control_chars);
  LH_RUN(test_round_trip_numbers);
  LH_RUN(test_encode_scalars);
  LH_RUN(test_encode_arrays);
  LH_RUN(test_encode_sorted_keys);
  LH_RUN(test_encode_large_object);
  LH_RUN(test_encode_nested_objects_past_the_inline_entries);
  LH_RUN(test_encode_escapes_strings);
  LH_RUN(test_encode_rejects_nan);
  LH_RUN(test_encode_rejects_inf);
  LH_RUN(test_encode_rejects_function);
  LH_RUN(test_encode_rejects_cycles);
  LH_RUN(test_encode_depth_limit);
  LH_RUN(test_encode_rejects_mixed_keys);
  LH_RUN(test_encode_rejects_bad_keys);
  LH_RUN(test_encode_leaves_stack_balanced);
  LH_RUN(test_form_basic);
  LH_RUN(test_form_plus_and_percent);
  LH_RUN(test_form_empty_pairs_and_values);
  LH_RUN(test_form_repeated);
  LH_RUN(test_form_invalid_escapes);
  LH_RUN(test_form_nul);
  LH_RUN(test_form_invalid_utf8);
  LH_RUN(test_form_missing_equals);
  LH_RUN(test_form_empty_name);
  LH_RUN(test_form_large_input);
  LH_RUN(test_encode_benchmark);
  LH_RUN(test_encode_refuses_invalid_utf8_keys);
  return lh_test_done();
}
