/* libFuzzer target: JSON and form decoding (host/json.c). The first byte picks the decoder. A
 * decoded JSON value must encode, that encoding must decode again, and encoding that gives the
 * same bytes: what the host writes, it can read. A decoded form must encode as JSON likewise. */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"

static lua_State *L;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_json: %s: %s\n", what, detail);
  abort();
}

/* Encodes the value on top of the stack (popping it) into out; aborts on failure. */
static void encode_top(lh_buf_t *out, const char *what) {
  char err[256];
  if (lh_json_encode(L, -1, out, err, sizeof(err)) != 0)
    fail(what, err);
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L)
    L = luaL_newstate();
  if (size < 1)
    return 0;
  int form = data[0] & 1;
  const char *buf = (const char *)data + 1;
  size_t len = size - 1;
  char err[256];
  int base = lua_gettop(L);
  int rc = form ? lh_form_decode(L, buf, len, err, sizeof(err))
                : lh_json_decode(L, buf, len, err, sizeof(err));
  if (rc != 0) {
    if (lua_gettop(L) != base)
      fail("a failed decode left values on the stack", err);
    return 0;
  }
  lh_buf_t first, second;
  lh_buf_init(&first);
  lh_buf_init(&second);
  encode_top(&first, "a decoded value does not encode");
  if (lh_json_decode(L, first.data, first.len, err, sizeof(err)) != 0)
    fail("the host's own encoding does not decode", err);
  encode_top(&second, "a re-decoded value does not encode");
  if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
    fail("encode -> decode -> encode is not stable", first.data);
  lh_buf_free(&first);
  lh_buf_free(&second);
  if (lua_gettop(L) != base)
    fail("stack not balanced", "");
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}
