/* json.c: strict JSON between the wire and Lua (json.h), form/query-string decoding, and the
 * `luahost.json` Lua module.
 *
 * Decoding parses with jansson (strict by configuration) and converts the tree to Lua values.
 * Encoding walks Lua values and writes straight into an lh_buf_t without building a tree, because
 * it runs for every response. Object keys are written in bytewise-sorted order so that output is
 * stable across runs and Lua states (clients, caches and tests can compare bodies); the sort costs
 * little next to the string escaping (see tests/c/test_json.c, test_encode_benchmark). */
#include "json.h"

#include <errno.h>
#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"

/* Addresses used as unique registry keys. */
static const char lh_json_array_mt_key = 0;
static const char lh_json_module_key = 0;

/* Once the encoder has this many Lua stack slots in use it stops keeping object values on the
 * stack and looks them up again by key instead; LuaJIT allows LUAI_MAXCSTACK (8000) slots per C
 * call, and deeper levels still need a few slots each. */
#define LH_JSON_STACK_KEEP_LIMIT 4000

void lh_json_push_array_mt(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&lh_json_array_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1))
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "luahost.json.array");
  lua_setfield(L, -2, "__name");
  /* Locked: Lua code sees this marker string instead of the shared table, so no script can
   * change how every JSON array in the state behaves. C code still gets the table itself. */
  lua_pushliteral(L, "luahost.json.array");
  lua_setfield(L, -2, "__metatable");
  lua_pushlightuserdata(L, (void *)&lh_json_array_mt_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* ---------------------------------------------------------------------------------------------
 * Decoding */

/* Counts bracket depth outside strings. jansson parses recursively up to 2048 levels and our
 * conversion recurses too, so rejecting deep input before either runs bounds the C stack whatever
 * the input. The count may be wrong for malformed input, which jansson rejects anyway. */
static int lh_json_depth_ok(const char *buf, size_t len) {
  int depth = 0;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char c = buf[i];
    if (in_string) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_string = 0;
    } else if (c == '"') {
      in_string = 1;
    } else if (c == '[' || c == '{') {
      if (++depth > LH_JSON_MAX_DEPTH)
        return 0;
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return 1;
}

static int lh_json_is_blank(const char *buf, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r')
      return 0;
  }
  return 1;
}

/* Writes the reason for a jansson failure. jansson's own wording is kept, except that a duplicate
 * key is named plainly ("duplicate object key 'a'") since that is the case clients most need to
 * understand. */
static void lh_json_format_error(const json_error_t *e, char *err, size_t errlen) {
  const char *text = e->text;
  if (json_error_code(e) == json_error_duplicate_key) {
    const char *near = strstr(text, "near '\"");
    if (near) {
      const char *key = near + 7;
      size_t n = strlen(key);
      if (n >= 2 && key[n - 2] == '"' && key[n - 1] == '\'')
        n -= 2;
      snprintf(err, errlen, "invalid JSON at line %d column %d: duplicate object key '%.*s'",
               e->line, e->column, (int)n, key);
      return;
    }
  }
  snprintf(err, errlen, "invalid JSON at line %d column %d: %s", e->line, e->column, text);
}

/* The process-wide limits of json.decode and json.form_decode (lh_json_set_body_limits). */
static lh_json_limits_t lh_json_body_limits;

void lh_json_set_body_limits(const lh_json_limits_t *limits) {
  lh_json_body_limits = *limits;
}

/* What one decode has built so far, against its limits. */
typedef struct {
  const lh_json_limits_t *lim; /* NULL: unbounded */
  size_t values, bytes;
  char *err;
  size_t errlen;
} lh_json_budget_t;

/* Counts `values` values costing `bytes`; LH_ELIMIT (with the reason written) past a limit. */
static int lh_json_charge(lh_json_budget_t *b, size_t values, size_t bytes) {
  b->values += values;
  b->bytes += bytes;
  if (!b->lim)
    return 0;
  if (b->lim->max_values && b->values > b->lim->max_values) {
    snprintf(b->err, b->errlen, "body too large when decoded: more than %zu values",
             b->lim->max_values);
    return LH_ELIMIT;
  }
  if (b->lim->max_bytes && b->bytes > b->lim->max_bytes) {
    snprintf(b->err, b->errlen, "body too large when decoded: more than %zu bytes",
             b->lim->max_bytes);
    return LH_ELIMIT;
  }
  return 0;
}

/* Pushes the Lua form of v. mt_idx is the stack index of the array metatable. The depth is
 * already bounded by lh_json_depth_ok, so the recursion is too. Every value is charged to b
 * before it is built. */
static int lh_json_push_value(lua_State *L, json_t *v, int mt_idx, lh_json_budget_t *b) {
  char *err = b->err;
  size_t errlen = b->errlen;
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "JSON value too large to convert");
    return LH_EINVAL;
  }
  size_t cost = LH_JSON_VALUE_COST;
  if (json_is_object(v))
    cost += LH_JSON_TABLE_COST + json_object_size(v) * LH_JSON_VALUE_COST;
  else if (json_is_array(v))
    cost += LH_JSON_TABLE_COST + json_array_size(v) * sizeof(lua_Number);
  else if (json_is_string(v))
    cost += LH_JSON_STRING_COST + json_string_length(v);
  int rc = lh_json_charge(b, 1, cost);
  if (rc != 0)
    return rc;
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *key;
    json_t *item;
    lua_createtable(L, 0, (int)json_object_size(v));
    json_object_foreach(v, key, item) {
      /* Keys cannot contain NUL: jansson rejects \u0000 without JSON_ALLOW_NUL. */
      size_t klen = strlen(key);
      b->bytes += LH_JSON_STRING_COST + klen;
      lua_pushlstring(L, key, klen);
      if ((rc = lh_json_push_value(L, item, mt_idx, b)) != 0)
        return rc;
      lua_rawset(L, -3);
    }
    return 0;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      if ((rc = lh_json_push_value(L, json_array_get(v, i), mt_idx, b)) != 0)
        return rc;
      lua_rawseti(L, -2, (int)(i + 1));
    }
    lua_pushvalue(L, mt_idx);
    lua_setmetatable(L, -2);
    return 0;
  }
  case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); return 0;
  case JSON_INTEGER: {
    json_int_t i = json_integer_value(v);
    if (i > LH_MAX_SAFE_INT || i < -LH_MAX_SAFE_INT) {
      snprintf(err, errlen,
               "invalid JSON: integer %lld is outside the exactly representable range "
               "(-%lld to %lld)",
               (long long)i, LH_MAX_SAFE_INT, LH_MAX_SAFE_INT);
      return LH_EINVAL;
    }
    lua_pushnumber(L, (lua_Number)i);
    return 0;
  }
  case JSON_REAL: lua_pushnumber(L, json_real_value(v)); return 0;
  case JSON_TRUE: lua_pushboolean(L, 1); return 0;
  case JSON_FALSE: lua_pushboolean(L, 0); return 0;
  case JSON_NULL: lua_pushlightuserdata(L, NULL); return 0;
  }
  snprintf(err, errlen, "invalid JSON: unknown value type");
  return LH_EINVAL;
}

int lh_json_decode(lua_State *L, const char *buf, size_t len, char *err, size_t errlen) {
  return lh_json_decode_limited(L, buf, len, NULL, err, errlen);
}

int lh_json_decode_limited(lua_State *L, const char *buf, size_t len,
                           const lh_json_limits_t *limits, char *err, size_t errlen) {
  if (!buf || lh_json_is_blank(buf, len)) {
    snprintf(err, errlen, "invalid JSON: empty input");
    return LH_EINVAL;
  }
  if (!lh_json_depth_ok(buf, len)) {
    snprintf(err, errlen, "JSON nesting deeper than %d levels", LH_JSON_MAX_DEPTH);
    return LH_EINVAL;
  }
  json_error_t e;
  /* Strictness comes from the flags: duplicate keys are rejected, NUL stays forbidden (no
   * JSON_ALLOW_NUL), and jansson itself rejects NaN, Infinity, invalid UTF-8, lone surrogates
   * and trailing data. JSON_DECODE_ANY allows scalars at the top level, as RFC 8259 does. */
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
  if (!root) {
    lh_json_format_error(&e, err, errlen);
    return LH_EINVAL;
  }
  /* A Lua memory error raised during the conversion would skip json_decref and leak the tree;
   * every other failure is handled below. */
  int base = lua_gettop(L);
  lh_json_push_array_mt(L);
  lh_json_budget_t budget = {limits, 0, 0, err, errlen};
  int rc = lh_json_push_value(L, root, base + 1, &budget);
  json_decref(root);
  if (rc != 0) {
    lua_settop(L, base);
    return rc;
  }
  lua_remove(L, base + 1);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding */

typedef struct {
  const char *key;
  size_t len;
  int vidx; /* stack index of the value, or 0 when it must be looked up again by key */
} lh_json_entry_t;

typedef struct {
  lua_State *L;
  lh_buf_t *out;
  /* Object entries of every level being encoded, as one stack: a level uses [base, n). They
   * start in `inline_ents` (a response's envelope and a document fit: no allocation per encode)
   * and move to the heap when more are needed. */
  lh_json_entry_t *ents;
  size_t n, cap;
  lh_json_entry_t inline_ents[48];
  char *err;
  size_t errlen;
  /* Where the failing value sits, built while unwinding, e.g. "users[3].name". */
  char path[192];
  size_t path_len;
} lh_json_enc_t;

static int lh_json_fail(lh_json_enc_t *c, const char *fmt, const char *arg) {
  snprintf(c->err, c->errlen, fmt, arg);
  return LH_EINVAL;
}

/* Prepends one path segment; a path that no longer fits keeps its innermost part and starts
 * with "...". */
static void lh_json_path_prepend(lh_json_enc_t *c, const char *seg, size_t n) {
  size_t room = sizeof(c->path) - 1;
  if (c->path_len + n > room) {
    if (c->path_len >= 3 && memcmp(c->path, "...", 3) == 0)
      return;
    seg = "...";
    n = 3;
    if (c->path_len + n > room)
      return;
  }
  memmove(c->path + n, c->path, c->path_len);
  memcpy(c->path, seg, n);
  c->path_len += n;
  c->path[c->path_len] = '\0';
}

static void lh_json_path_key(lh_json_enc_t *c, const char *key, size_t len) {
  char seg[40];
  size_t n = len > 32 ? 32 : len;
  seg[0] = '.';
  memcpy(seg + 1, key, n);
  lh_json_path_prepend(c, seg, n + 1);
}

static void lh_json_path_index(lh_json_enc_t *c, size_t i) {
  char seg[32];
  int n = snprintf(seg, sizeof(seg), "[%zu]", i);
  lh_json_path_prepend(c, seg, (size_t)n);
}

static int lh_json_encode_value(lh_json_enc_t *c, int idx, int depth);

static int lh_json_encode_number(lh_json_enc_t *c, double x) {
  if (isnan(x))
    return lh_json_fail(c, "cannot encode %s", "NaN");
  if (isinf(x))
    return lh_json_fail(c, "cannot encode %s", x > 0 ? "Infinity" : "-Infinity");
  /* Integral values within the safe range print exactly, without a fraction and without printf.
   * Decoding refuses integers outside it, so larger integral values print below as reals. */
  if (x >= -(double)LH_MAX_SAFE_INT && x <= (double)LH_MAX_SAFE_INT) {
    long long i = (long long)x;
    if ((double)i == x) {
      if (i < 0) {
        lh_buf_putc(c->out, '-');
        return lh_buf_put_u64(c->out, 0ULL - (unsigned long long)i);
      }
      return lh_buf_put_u64(c->out, (unsigned long long)i);
    }
  }
  /* The shortest of 15 or 17 significant digits that reads back as the same double, so 0.1
   * prints as 0.1 rather than 0.10000000000000001. */
  char tmp[32];
  int n = snprintf(tmp, sizeof(tmp), "%.15g", x);
  if (strtod(tmp, NULL) != x)
    n = snprintf(tmp, sizeof(tmp), "%.17g", x);
  /* A locale with a decimal comma would make invalid JSON. */
  int real = 0;
  for (int i = 0; i < n; i++) {
    if (tmp[i] == ',')
      tmp[i] = '.';
    if (tmp[i] == '.' || tmp[i] == 'e')
      real = 1;
  }
  /* 9007199254740993 and the like print all their digits with %.17g: a fraction keeps them a
   * real for the decoder, which refuses integers past the safe range. */
  if (!real && n + 2 < (int)sizeof(tmp)) {
    memcpy(tmp + n, ".0", 2);
    n += 2;
  }
  return lh_buf_append(c->out, tmp, (size_t)n);
}

static int lh_json_encode_array(lh_json_enc_t *c, int idx, size_t n, int depth) {
  lua_State *L = c->L;
  lh_buf_putc(c->out, '[');
  for (size_t i = 1; i <= n; i++) {
    if (i > 1)
      lh_buf_putc(c->out, ',');
    lua_rawgeti(L, idx, (int)i);
    int rc = lh_json_encode_value(c, lua_gettop(L), depth);
    lua_pop(L, 1);
    if (rc != 0) {
      lh_json_path_index(c, i);
      return rc;
    }
  }
  return lh_buf_putc(c->out, ']');
}

static int lh_json_entry_cmp(const void *a, const void *b) {
  const lh_json_entry_t *x = a, *y = b;
  /* Keys usually differ in their first byte: decide those without calling memcmp. */
  if (x->len && y->len && x->key[0] != y->key[0])
    return (unsigned char)x->key[0] < (unsigned char)y->key[0] ? -1 : 1;
  size_t n = x->len < y->len ? x->len : y->len;
  int r = memcmp(x->key, y->key, n);
  if (r != 0)
    return r;
  return x->len < y->len ? -1 : x->len > y->len;
}

static void lh_json_sort_entries(lh_json_entry_t *e, size_t n) {
  if (n > 16) {
    qsort(e, n, sizeof(*e), lh_json_entry_cmp);
    return;
  }
  /* Insertion sort: typical API objects have a handful of keys. */
  for (size_t i = 1; i < n; i++) {
    lh_json_entry_t t = e[i];
    size_t j = i;
    while (j > 0 && lh_json_entry_cmp(&e[j - 1], &t) > 0) {
      e[j] = e[j - 1];
      j--;
    }
    e[j] = t;
  }
}

static int lh_json_push_entry(lh_json_enc_t *c, const char *key, size_t len, int vidx) {
  if (c->n == c->cap) {
    size_t cap = c->cap * 2;
    int was_inline = c->ents == c->inline_ents;
    lh_json_entry_t *p = realloc(was_inline ? NULL : c->ents, cap * sizeof(*p));
    if (!p)
      return lh_json_fail(c, "%s", "out of memory");
    if (was_inline)
      memcpy(p, c->inline_ents, c->n * sizeof(*p));
    c->ents = p;
    c->cap = cap;
  }
  c->ents[c->n].key = key;
  c->ents[c->n].len = len;
  c->ents[c->n].vidx = vidx;
  c->n++;
  return 0;
}

/* Writes the sorted entries [ebase, c->n) of the table at idx as an object. */
static int lh_json_emit_object(lh_json_enc_t *c, int idx, size_t ebase, int depth) {
  lua_State *L = c->L;
  if (c->n == ebase) /* {} */
    return lh_buf_append(c->out, "{}", 2);
  lh_json_sort_entries(c->ents + ebase, c->n - ebase);
  lh_buf_putc(c->out, '{');
  for (size_t i = ebase; i < c->n; i++) {
    /* Read the entry each time: a nested level may move the array when it grows. */
    lh_json_entry_t e = c->ents[i];
    if (i > ebase)
      lh_buf_putc(c->out, ',');
    /* Values with invalid UTF-8 are repaired (U+FFFD); keys are refused, since two repaired
     * keys could collide into a duplicate that no strict decoder accepts. */
    if (!lh_utf8_valid((const unsigned char *)e.key, e.len))
      return lh_json_fail(c, "cannot encode an object key that is not %s", "valid UTF-8");
    /* Decoding refuses \u0000 in keys (lh_json_decode): what is encoded must decode. */
    if (memchr(e.key, '\0', e.len))
      return lh_json_fail(c, "cannot encode an object key holding %s", "a NUL byte");
    lh_buf_put_json_string(c->out, e.key, e.len);
    lh_buf_putc(c->out, ':');
    if (e.vidx) {
      lua_pushvalue(L, e.vidx);
    } else {
      lua_pushlstring(L, e.key, e.len);
      lua_rawget(L, idx);
    }
    int rc = lh_json_encode_value(c, lua_gettop(L), depth);
    lua_pop(L, 1);
    if (rc != 0) {
      lh_json_path_key(c, e.key, e.len);
      return rc;
    }
  }
  return lh_buf_putc(c->out, '}');
}

/* Collects the keys of the table at idx. String keys become entries (their values stay on the
 * stack while there is room); numeric keys are only counted, to recognise 1..n sequences. */
static int lh_json_encode_table(lh_json_enc_t *c, int idx, int depth) {
  lua_State *L = c->L;
  if (depth > LH_JSON_MAX_DEPTH)
    return lh_json_fail(c, "nesting too deep or cyclic (more than %s levels)", "64");
  if (!lua_checkstack(L, 8))
    return lh_json_fail(c, "%s", "Lua stack exhausted");
  size_t alen;
  if (lh_lua_is_array(L, idx, &alen))
    return lh_json_encode_array(c, idx, alen, depth);
  int base = lua_gettop(L);
  size_t ebase = c->n;
  size_t nnum = 0;
  double maxnum = 0;
  int rc = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      if (nnum) {
        rc = lh_json_fail(c, "cannot encode a table with both %s keys", "string and numeric");
        break;
      }
      size_t len;
      const char *key = lua_tolstring(L, -2, &len);
      int keep = lua_gettop(L) < LH_JSON_STACK_KEEP_LIMIT && lua_checkstack(L, 3);
      rc = lh_json_push_entry(c, key, len, keep ? lua_gettop(L) : 0);
      if (rc != 0)
        break;
      if (keep)
        lua_pushvalue(L, -2); /* the key again, for lua_next; key and value stay below */
      else
        lua_pop(L, 1);
    } else if (kt == LUA_TNUMBER) {
      double k = lua_tonumber(L, -2);
      if (c->n > ebase) {
        rc = lh_json_fail(c, "cannot encode a table with both %s keys", "string and numeric");
        break;
      }
      if (k < 1 || k != floor(k)) {
        rc = lh_json_fail(c, "cannot encode a table with numeric key %s", "not in 1..n");
        break;
      }
      nnum++;
      if (k > maxnum)
        maxnum = k;
      lua_pop(L, 1);
    } else {
      rc = lh_json_fail(c, "cannot encode a table with a key of type %s", lua_typename(L, kt));
      break;
    }
  }
  if (rc == 0) {
    if (nnum) {
      if (maxnum != (double)nnum)
        rc = lh_json_fail(c, "cannot encode a sparse array (%s)", "numeric keys are not 1..n");
      else
        rc = lh_json_encode_array(c, idx, nnum, depth);
    } else {
      rc = lh_json_emit_object(c, idx, ebase, depth);
    }
  }
  c->n = ebase;
  lua_settop(L, base);
  return rc;
}

static int lh_json_encode_value(lh_json_enc_t *c, int idx, int depth) {
  lua_State *L = c->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return lh_buf_append(c->out, "null", 4);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? lh_buf_append(c->out, "true", 4)
                                 : lh_buf_append(c->out, "false", 5);
  case LUA_TNUMBER: return lh_json_encode_number(c, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return lh_buf_put_json_string(c->out, s, len);
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return lh_buf_append(c->out, "null", 4);
    return lh_json_fail(c, "cannot encode %s", "a light userdata other than json.null");
  case LUA_TTABLE: return lh_json_encode_table(c, idx, depth + 1);
  default: return lh_json_fail(c, "cannot encode a %s", lua_typename(L, lua_type(L, idx)));
  }
}

int lh_json_encode(lua_State *L, int idx, lh_buf_t *out, char *err, size_t errlen) {
  int base = lua_gettop(L);
  if (idx < 0 && idx > LUA_REGISTRYINDEX)
    idx = base + idx + 1;
  lh_json_enc_t c;
  c.L = L;
  c.out = out;
  c.ents = c.inline_ents;
  c.n = 0;
  c.cap = sizeof(c.inline_ents) / sizeof(c.inline_ents[0]);
  c.err = err;
  c.errlen = errlen;
  c.path[0] = '\0';
  c.path_len = 0;
  if (!lua_checkstack(L, 8)) {
    snprintf(err, errlen, "Lua stack exhausted");
    return LH_EINVAL;
  }
  int rc = lh_json_encode_value(&c, idx, 0);
  if (c.ents != c.inline_ents)
    free(c.ents);
  lua_settop(L, base);
  if (rc == 0 && out->failed) {
    snprintf(err, errlen, "out of memory");
    rc = LH_ENOMEM;
  }
  if (rc != 0 && c.path_len) {
    /* Append the location to the reason: "cannot encode a function at users[2].name". */
    size_t used = strlen(err);
    const char *path = c.path[0] == '.' ? c.path + 1 : c.path;
    if (used < errlen)
      snprintf(err + used, errlen - used, " at %s", path);
  }
  return rc == 0 ? 0 : LH_EINVAL;
}

/* ---------------------------------------------------------------------------------------------
 * Form and query-string decoding */

/* Decodes one name or value of src[0..n) into dst (at most n bytes). Returns the decoded length,
 * or -1 for an invalid %-escape, -2 for a NUL byte. */
static long lh_form_unescape(const char *src, size_t n, char *dst) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)src[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= n)
        return -1;
      int hi = lh_hexval((unsigned char)src[i + 1]);
      int lo = lh_hexval((unsigned char)src[i + 2]);
      if (hi < 0 || lo < 0)
        return -1;
      c = (unsigned char)(hi << 4 | lo);
      i += 2;
    }
    if (c == '\0')
      return -2;
    dst[o++] = (char)c;
  }
  return (long)o;
}

/* Names a field in an error message: at most 64 bytes, non-printable bytes as '?', so a message
 * never carries control characters or broken UTF-8 from the input. */
static void lh_form_field_name(const char *name, size_t n, char *out, size_t outlen) {
  size_t k = 0;
  for (size_t i = 0; i < n && i < 64 && k + 1 < outlen; i++) {
    unsigned char c = (unsigned char)name[i];
    out[k++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
  }
  out[k] = '\0';
}

int lh_form_decode(lua_State *L, const char *buf, size_t len, char *err, size_t errlen) {
  return lh_form_decode_limited(L, buf, len, NULL, err, errlen);
}

int lh_form_decode_limited(lua_State *L, const char *buf, size_t len,
                           const lh_json_limits_t *limits, char *err, size_t errlen) {
  lh_json_budget_t budget = {limits, 0, 0, err, errlen};
  /* Decoded text is never longer than its source: one scratch area serves every field. Small
   * inputs use the C stack; larger ones a Lua userdata, so a Lua error cannot leak it. */
  char small[512];
  char *scratch = small;
  int base = lua_gettop(L);
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "Lua stack exhausted");
    return LH_EINVAL;
  }
  if (len > sizeof(small))
    scratch = lua_newuserdata(L, len);
  lua_newtable(L);
  int t = lua_gettop(L);
  size_t pos = 0;
  while (buf && pos < len) {
    const char *pair = buf + pos;
    const char *amp = memchr(pair, '&', len - pos);
    size_t plen = amp ? (size_t)(amp - pair) : len - pos;
    pos += plen + 1;
    if (plen == 0)
      continue; /* "a&&b": empty pairs carry nothing */
    const char *eq = memchr(pair, '=', plen);
    size_t nlen = eq ? (size_t)(eq - pair) : plen;
    const char *val = eq ? eq + 1 : pair + plen;
    size_t vlen = eq ? plen - nlen - 1 : 0;
    char field[72];
    lh_form_field_name(pair, nlen, field, sizeof(field));
    const char *what = NULL;
    long dn = lh_form_unescape(pair, nlen, scratch);
    if (dn >= 0 && !lh_utf8_valid((const unsigned char *)scratch, (size_t)dn))
      what = "invalid UTF-8 in the name of field '%s'";
    else if (dn == -1)
      what = "invalid percent-encoding in the name of field '%s'";
    else if (dn == -2)
      what = "NUL byte in the name of field '%s'";
    else if (dn == 0)
      what = "empty field name%s";
    if (what) {
      snprintf(err, errlen, what, dn == 0 ? "" : field);
      lua_settop(L, base);
      return LH_EINVAL;
    }
    /* One field: a name and a value in the table (the value's length is charged below). */
    if (lh_json_charge(&budget, 1, LH_JSON_VALUE_COST + 2 * LH_JSON_STRING_COST + (size_t)dn) !=
        0) {
      lua_settop(L, base);
      return LH_ELIMIT;
    }
    lua_pushlstring(L, scratch, (size_t)dn);
    lua_pushvalue(L, -1);
    lua_rawget(L, t);
    int repeated = !lua_isnil(L, -1);
    lua_pop(L, 1);
    /* Report the decoded name: that is what the script sees. */
    lh_form_field_name(scratch, (size_t)dn, field, sizeof(field));
    long dv = lh_form_unescape(val, vlen, scratch);
    if (repeated)
      what = "field '%s' appears more than once";
    else if (dv == -1)
      what = "invalid percent-encoding in field '%s'";
    else if (dv == -2)
      what = "NUL byte in field '%s'";
    else if (!lh_utf8_valid((const unsigned char *)scratch, (size_t)dv))
      what = "invalid UTF-8 in field '%s'";
    if (what) {
      snprintf(err, errlen, what, field);
      lua_settop(L, base);
      return LH_EINVAL;
    }
    if (lh_json_charge(&budget, 0, (size_t)dv) != 0) { /* the value's bytes: one field */
      lua_settop(L, base);
      return LH_ELIMIT;
    }
    lua_pushlstring(L, scratch, (size_t)dv);
    lua_rawset(L, t);
  }
  if (t != base + 1)
    lua_remove(L, base + 1); /* the scratch userdata */
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The luahost.json module */

/* The encode buffer lives in a userdata upvalue, reused by every call in this state: encoding
 * cannot re-enter itself (no Lua code runs during it), and the garbage collector frees it. */
static int lh_json_buf_gc(lua_State *L) {
  lh_buf_t *b = lua_touserdata(L, 1);
  lh_buf_free(b);
  return 0;
}

/* json.encode(value) -> string. Raises on values that have no JSON form: that is the caller's
 * mistake. */
static int lh_json_l_encode(lua_State *L) {
  char err[256];
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  lh_buf_t *b = lua_touserdata(L, lua_upvalueindex(1));
  lh_buf_reset(b);
  if (lh_json_encode(L, 1, b, err, sizeof(err)) != 0)
    return luaL_error(L, "json.encode: %s", err);
  lua_pushlstring(L, b->data, b->len);
  /* Do not keep a huge allocation alive after one large response. */
  if (b->cap > 1 << 20)
    lh_buf_free(b);
  return 1;
}

/* Pushes nil, the reason and its code ("too_large" past the body limits, else "invalid"). */
static int lh_json_l_fail(lua_State *L, int rc, const char *err) {
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushstring(L, rc == LH_ELIMIT ? "too_large" : "invalid");
  return 3;
}

/* json.decode(string) -> value, or nil, a reason and a code: the input came from outside. */
static int lh_json_l_decode(lua_State *L) {
  char err[256];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int rc = lh_json_decode_limited(L, s, len, &lh_json_body_limits, err, sizeof(err));
  return rc != 0 ? lh_json_l_fail(L, rc, err) : 1;
}

/* json.form_decode(string) -> table of name -> string, or nil, a reason and a code (a form body
 * or a query string from outside). */
int lh_json_l_form_decode(lua_State *L) {
  char err[256];
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  int rc = lh_form_decode_limited(L, s, len, &lh_json_body_limits, err, sizeof(err));
  return rc != 0 ? lh_json_l_fail(L, rc, err) : 1;
}

/* json.array([t]) -> t marked as an array (a new empty one when t is nil). */
static int lh_json_l_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  lh_json_push_array_mt(L);
  /* lua_setmetatable from C ignores __metatable: replacing a metatable here would unlock the
   * read-only views scripts get of host modules. Only plain tables (or arrays) may be marked. */
  if (lua_getmetatable(L, 1)) {
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    if (!same)
      return luaL_argerror(L, 1, "a table without a metatable expected");
  }
  lua_setmetatable(L, 1);
  return 1;
}

/* json.is_array(v) -> true when v is a table carrying the array marker. */
static int lh_json_l_is_array(lua_State *L) {
  int yes = 0;
  if (lua_istable(L, 1) && lua_getmetatable(L, 1)) {
    lh_json_push_array_mt(L);
    yes = lua_rawequal(L, -1, -2);
  }
  lua_pushboolean(L, yes);
  return 1;
}

int lh_lua_is_array(lua_State *L, int idx, size_t *n) {
  *n = lua_objlen(L, idx);
  if (lua_getmetatable(L, idx)) {
    lh_json_push_array_mt(L);
    int marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (marked)
      return 1;
  }
  /* One pass: every key a positive integer, and the largest equals the count. */
  size_t count = 0;
  lua_Number max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (k < 1 || k != floor(k)) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
    if (k > max)
      max = k;
  }
  *n = count;
  return count > 0 && max == (lua_Number)count;
}

static int lh_json_l_utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, lh_utf8_valid((const unsigned char *)s, len));
  return 1;
}

static int lh_json_l_utf8_len(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  size_t n = lh_utf8_count((const unsigned char *)s, len);
  if (n == (size_t)-1)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)n);
  return 1;
}

int luaopen_luahost_json(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&lh_json_module_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1))
    return 1;
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"decode", lh_json_l_decode},
                                 {"form_decode", lh_json_l_form_decode},
                                 {"array", lh_json_l_array},
                                 {"is_array", lh_json_l_is_array},
                                 {"utf8_valid", lh_json_l_utf8_valid},
                                 {"utf8_len", lh_json_l_utf8_len},
                                 {NULL, NULL}};
  lua_createtable(L, 0, 9);
  luaL_register(L, NULL, fns);
  /* encode keeps its output buffer as an upvalue, reused call after call */
  lh_buf_t *b = lua_newuserdata(L, sizeof(*b));
  lh_buf_init(b);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lh_json_buf_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, lh_json_l_encode, 1);
  lua_setfield(L, -2, "encode");
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushnumber(L, (lua_Number)LH_MAX_SAFE_INT);
  lua_setfield(L, -2, "max_safe_integer");

  lua_pushlightuserdata(L, (void *)&lh_json_module_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 1;
}
