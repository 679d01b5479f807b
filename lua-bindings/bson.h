/* bson.h: conversion between BSON documents and Lua values, and the Lua types that stand for the
 * BSON values Lua has no type for: ObjectId ("luahost.objectid"), UTC datetime ("luahost.date")
 * and regular expression ("luahost.regex").
 *
 * Lua -> BSON: tables become documents (string keys only); a nested table with the JSON array
 * metatable (lh_json_push_array_mt), or a non-empty table whose keys are exactly 1..n, becomes an
 * array. Numbers that are integral and fit int32 become int32, integral with |x| <= 2^53 become
 * int64, everything else double. json.null (a NULL light userdata) becomes null.
 * BSON -> Lua: documents become tables, arrays become tables carrying the array metatable (so `[]`
 * survives a round trip), int32/int64/double become numbers, null and undefined become json.null.
 * Binary, decimal128, symbols, code and the other rare types become strings; nothing crashes.
 * Nesting deeper than LH_BSON_MAX_DEPTH is an error in both directions. */
#ifndef LH_BSON_H
#define LH_BSON_H

#include <stddef.h>
#include <stdint.h>
#include <bson/bson.h>
#include <lua.h>

#define LH_BSON_MAX_DEPTH 64

#define LH_OBJECTID_MT "luahost.objectid"
#define LH_DATE_MT "luahost.date"
#define LH_REGEX_MT "luahost.regex"

/* Appends the fields of the table at idx to `out`, which the caller has initialised (bson_init)
 * and still owns, also on failure (it may then hold some of the fields). Returns 0, or LH_EINVAL
 * with a reason naming the offending key in err. Raises only on a Lua memory error. */
int lh_bson_from_lua(lua_State *L, int idx, bson_t *out, char *err, size_t errlen);

/* Pushes the document as a table and returns 0. On a malformed document or one nested deeper than
 * LH_BSON_MAX_DEPTH pushes nothing and returns LH_EINVAL or LH_ELIMIT. */
int lh_bson_to_lua(lua_State *L, const bson_t *doc);

/* Pushes the value the iterator points at (documents and arrays are converted recursively).
 * Returns 0, or a negative LH_E* code with nothing pushed. */
int lh_bson_push_iter(lua_State *L, const bson_iter_t *it);

/* The Lua value types. The push functions create the metatables on first use. */
void lh_bson_push_oid(lua_State *L, const bson_oid_t *oid);
/* The ObjectId at idx, or NULL when the value there is not one. */
const bson_oid_t *lh_bson_to_oid(lua_State *L, int idx);
void lh_bson_push_date(lua_State *L, int64_t ms);
/* Sets *ms and returns 1 when the value at idx is a luahost.date, else returns 0. */
int lh_bson_to_date(lua_State *L, int idx, int64_t *ms);
/* Pushes a regex; pattern and options are copied. Options must be a subset of "ilmsux". */
void lh_bson_push_regex(lua_State *L, const char *pattern, const char *options);

/* Formats ms since the epoch as RFC 3339 UTC with milliseconds (2026-11-25T13:00:00.123Z) into
 * buf (at least 32 bytes). Returns 0 or LH_EINVAL when the year is outside 0..9999. */
int lh_bson_format_date(int64_t ms, char *buf, size_t buflen);

/* Adds the constructors to the table on top of the stack: objectid([hex]), date(ms), now(),
 * regex(pattern[, options]). Used by luahost.mongo. */
void lh_bson_register_constructors(lua_State *L);

#endif
