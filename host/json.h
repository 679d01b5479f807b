/* json.h: strict JSON between the wire and Lua, in C (jansson for decoding), and
 * application/x-www-form-urlencoded decoding.
 *
 * Lua representation: objects are tables; arrays are tables carrying the array metatable (so an
 * empty array stays `[]` when encoded again); null is the light userdata `json.null` (NULL).
 * Encoding: a table with the array metatable, or a non-empty table whose keys are exactly 1..n,
 * encodes as an array; other tables as objects (string keys only; numeric keys are an error);
 * an empty table without the marker encodes as `{}`. NaN and ±Infinity, functions, userdata other
 * than null, cycles and nesting deeper than LH_JSON_MAX_DEPTH are errors. Integers that fit in
 * int64 encode without a fraction. Object keys are written in bytewise-sorted order, so output is
 * stable; an array-marked table encodes t[1..#t] and ignores other keys; nil encodes as null. */
#ifndef LH_JSON_H
#define LH_JSON_H

#include <stddef.h>
#include <lua.h>
#include "buf.h"
#include "utf8.h" /* lh_utf8_valid, used with the codec */

#define LH_JSON_MAX_DEPTH 64

/* Decodes buf strictly: duplicate keys, NaN/Infinity, \u0000, invalid UTF-8, nesting over
 * LH_JSON_MAX_DEPTH and trailing garbage are errors. On success pushes one value and returns 0.
 * On failure pushes nothing, writes a human-readable reason to err, returns LH_EINVAL. */
int lh_json_decode(lua_State *L, const char *buf, size_t len, char *err, size_t errlen);

/* Bounds on what one decode may build in Lua (a request body decoded by json.decode or
 * json.form_decode): values (every object, array, string, number, boolean, null, and every form
 * field) and an estimate of the bytes the Lua values take (string bytes plus a fixed cost per
 * value and per table). 0 means unbounded. The body's size alone does not bound this: a 64 KB
 * body of small keys becomes about 1 MB of Lua tables. */
typedef struct {
  size_t max_values;
  size_t max_bytes;
} lh_json_limits_t;

/* Per-value and per-table costs of the estimate (LuaJIT, 64-bit: a table slot with its key, a
 * table header with its metatable pointer, a string header). */
#define LH_JSON_VALUE_COST 40
#define LH_JSON_TABLE_COST 64
#define LH_JSON_STRING_COST 24

/* The limits json.decode and json.form_decode apply in every Lua state of the process (set once
 * at start from the configuration, before any worker runs; unbounded until then). */
void lh_json_set_body_limits(const lh_json_limits_t *limits);

/* lh_json_decode within limits (NULL: unbounded). Past a limit it fails with LH_ELIMIT and a
 * reason naming the limit, pushing nothing. */
int lh_json_decode_limited(lua_State *L, const char *buf, size_t len,
                           const lh_json_limits_t *limits, char *err, size_t errlen);

/* lh_form_decode within limits (NULL: unbounded); LH_ELIMIT past one. */
int lh_form_decode_limited(lua_State *L, const char *buf, size_t len,
                           const lh_json_limits_t *limits, char *err, size_t errlen);

/* Appends the JSON encoding of the value at idx to out. On failure writes the reason to err and
 * returns LH_EINVAL (out may hold a partial encoding; the caller discards it). */
int lh_json_encode(lua_State *L, int idx, lh_buf_t *out, char *err, size_t errlen);

/* The array rule, for JSON and BSON alike: 1 when the table at idx is an array, i.e. it carries
 * the array metatable, or it is non-empty and its keys are exactly the integers 1..n; *n is then
 * the element count (#t for a marked table). Any other table is an object. */
int lh_lua_is_array(lua_State *L, int idx, size_t *n);
/* Pushes the array metatable (creating it once per state). */
void lh_json_push_array_mt(lua_State *L);
/* Decodes a form body or a query string into a table of name -> string. '+' is a space; %XX
 * escapes; a name without '=' has the value "". A repeated name, an invalid escape, a NUL byte,
 * invalid UTF-8 and an empty name are errors (the message names the field). Pushes the table and
 * returns 0, or writes err and returns LH_EINVAL. */
int lh_form_decode(lua_State *L, const char *buf, size_t len, char *err, size_t errlen);

/* The Lua function behind json.form_decode (also luahost.form_decode). */
int lh_json_l_form_decode(lua_State *L);

/* Module table for `require "luahost.json"`: encode, decode (value, or nil, reason and a code:
 * "invalid" or "too_large" past the body limits), null, array(t), is_array(t),
 * form_decode, utf8_valid(s) -> boolean, utf8_len(s) -> code points | nil (the one UTF-8
 * validator, utf8.h) and max_safe_integer (LH_MAX_SAFE_INT). */
int luaopen_luahost_json(lua_State *L);

#endif
