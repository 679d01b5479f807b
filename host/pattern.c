/* pattern.c: reading Lua patterns, and the pattern guard (see pattern.h).
 *
 * Lua's pattern matcher runs in C, where the budget hook never fires, and it backtracks: on an
 * attacker-chosen subject, "a-a-a-b" takes hours and the worker with it. The work explodes when
 * adjacent quantified items can match the same characters: each one multiplies the tries by the
 * subject length, and an unanchored search adds one more factor. The reader splits the pattern
 * into items with their character sets and finds the longest chain of quantified items that can
 * take each other's characters (items in between that the chain can absorb do not break it); the
 * guard refuses a call whose worst case, len^(chain + unanchored), passes about 1e9 steps: a chain
 * of 3 on 1 KB, of 2 on 31 KB, of 12 on 5 bytes. It holds for every subject length: a short
 * subject with a long chain ("a-" twelve times on 64 bytes) is just as exponential. Reading a
 * pattern costs one pass over it, small next to the match. Linear patterns (^%s*(%S+)%s+(%S+)%s*$,
 * %d+-%d+) always pass.
 *
 * The same reader tells whether a pattern is well formed. Lua reports most pattern errors only
 * when matching reaches the broken part, so trying a pattern on a sample cannot prove it sound. */
#include "pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "lh.h"

#define LH_PATTERN_MAX_LOG10 9.0

typedef struct {
  uint64_t bits[4];
} lh_charset_t;

static void cs_set(lh_charset_t *cs, unsigned c) {
  cs->bits[c >> 6] |= 1ULL << (c & 63);
}

static void cs_all(lh_charset_t *cs) {
  memset(cs, 0xff, sizeof(*cs));
}

static int cs_overlap(const lh_charset_t *a, const lh_charset_t *b) {
  for (int i = 0; i < 4; i++)
    if (a->bits[i] & b->bits[i])
      return 1;
  return 0;
}

/* The sets of the class letters (%a, %d, ...), computed once: the guard runs on every pattern call
 * with a long subject, so it must cost a few table lookups, not 256 ctype calls per item. */
static lh_charset_t class_sets[26];
static uv_once_t class_sets_once = UV_ONCE_INIT;

static void class_sets_init(void) {
  for (unsigned c = 0; c < 256; c++) {
    int ci = (int)c;
    int in[26] = {0};
    in['a' - 'a'] = isalpha(ci) != 0;
    in['c' - 'a'] = iscntrl(ci) != 0;
    in['d' - 'a'] = isdigit(ci) != 0;
    in['g' - 'a'] = isgraph(ci) != 0;
    in['l' - 'a'] = islower(ci) != 0;
    in['p' - 'a'] = ispunct(ci) != 0;
    in['s' - 'a'] = isspace(ci) != 0;
    in['u' - 'a'] = isupper(ci) != 0;
    in['w' - 'a'] = isalnum(ci) != 0;
    in['x' - 'a'] = isxdigit(ci) != 0;
    for (int k = 0; k < 26; k++)
      if (in[k])
        cs_set(&class_sets[k], c);
  }
}

static void cs_class(lh_charset_t *cs, unsigned char cl) {
  static const char letters[] = "acdglpsuwx";
  unsigned char lower = (unsigned char)(cl | 0x20);
  if (lower >= 'a' && lower <= 'z' && memchr(letters, lower, sizeof(letters) - 1)) {
    uv_once(&class_sets_once, class_sets_init);
    const lh_charset_t *set = &class_sets[lower - 'a'];
    int complement = cl != lower; /* %A, %S, ...: upper case is the complement */
    for (int i = 0; i < 4; i++)
      cs->bits[i] |= complement ? ~set->bits[i] : set->bits[i];
  } else {
    cs_set(cs, cl); /* an escaped literal such as %. */
  }
}

/* Reads a set "[...]" whose '[' is at p[i]; returns the index just past its ']', or 0 when it is
 * not closed. As Lua reads it: the first character after "[" or "[^" is literal even when it is
 * ']'. */
static size_t read_set(const char *p, size_t n, size_t i, lh_charset_t *cs) {
  lh_charset_t in = {{0, 0, 0, 0}};
  int negate = 0;
  i++;
  if (i < n && p[i] == '^') {
    negate = 1;
    i++;
  }
  do {
    if (i >= n)
      return 0;
    if (p[i] == '%') {
      if (i + 1 >= n)
        return 0;
      cs_class(&in, (unsigned char)p[i + 1]);
      i += 2;
    } else if (i + 2 < n && p[i + 1] == '-' && p[i + 2] != ']') {
      for (unsigned c = (unsigned char)p[i]; c <= (unsigned char)p[i + 2]; c++)
        cs_set(&in, c);
      i += 3;
    } else {
      cs_set(&in, (unsigned char)p[i]);
      i++;
    }
  } while (i < n && p[i] != ']');
  if (i >= n)
    return 0;
  for (int k = 0; k < 4; k++)
    cs->bits[k] = negate ? ~in.bits[k] : in.bits[k];
  return i + 1;
}

void lh_pattern_scan(const char *p, size_t n, lh_pattern_info_t *info) {
  memset(info, 0, sizeof(*info));
  int chain = 0, have_prev = 0, linked = 0, open = 0;
  lh_charset_t prev = {{0, 0, 0, 0}};
  size_t i = 0;
  if (n && p[0] == '^') {
    info->anchored = 1;
    i = 1;
  }
  while (i < n) {
    lh_charset_t cs = {{0, 0, 0, 0}};
    char c = p[i];
    int quantifiable = 1;
    if (c == '(' || c == ')') {
      if (c == ')' && open == 0) {
        info->problem = "')' without '('";
        return;
      }
      open += c == '(' ? 1 : -1;
      i++;
      continue;
    }
    if (c == '$' && i + 1 == n)
      break;
    if (c == '%') {
      if (i + 1 >= n) {
        info->problem = "ends with '%'";
        return;
      }
      char d = p[i + 1];
      if (d == 'b') {
        if (i + 3 >= n) {
          info->problem = "'%b' needs two characters";
          return;
        }
        cs_all(&cs); /* %bxy: a balanced run, anything inside */
        quantifiable = 0;
        i += 4;
      } else if (d == 'f') {
        if (i + 2 >= n || p[i + 2] != '[') {
          info->problem = "'%f' must be followed by a set '[...]'";
          return;
        }
        size_t end = read_set(p, n, i + 2, &cs);
        if (!end) {
          info->problem = "a set '[...]' is not closed";
          return;
        }
        i = end; /* a frontier: zero width, neither extends nor breaks a chain */
        continue;
      } else if (d >= '0' && d <= '9') {
        info->backrefs = 1;
        cs_all(&cs); /* a back-reference: anything */
        quantifiable = 0;
        i += 2;
      } else {
        cs_class(&cs, (unsigned char)d);
        i += 2;
      }
    } else if (c == '[') {
      size_t end = read_set(p, n, i, &cs);
      if (!end) {
        info->problem = "a set '[...]' is not closed";
        return;
      }
      i = end;
    } else {
      if (c == '.')
        cs_all(&cs);
      else
        cs_set(&cs, (unsigned char)c);
      i++;
    }
    char q = (quantifiable && i < n) ? p[i] : 0;
    if (q == '*' || q == '+' || q == '-') {
      i++;
      chain = (have_prev && linked && cs_overlap(&prev, &cs)) ? chain + 1 : 1;
      if (chain > info->chain)
        info->chain = chain;
      prev = cs;
      have_prev = linked = 1;
    } else if (q == '?') {
      i++; /* optional: it neither extends nor breaks a chain */
    } else if (have_prev && !cs_overlap(&prev, &cs)) {
      linked = 0; /* a required character the chain cannot take: backtracking stops here */
    }
  }
  if (open > 0)
    info->problem = "'(' is not closed";
}

static int guarded_pattern_call(lua_State *L) {
  int nargs = lua_gettop(L);
  size_t n, pn;
  luaL_checklstring(L, 1, &n);
  const char *pat = luaL_checklstring(L, 2, &pn);
  int plain = lua_toboolean(L, lua_upvalueindex(2)) && nargs >= 4 && lua_toboolean(L, 4);
  if (!plain) {
    lh_pattern_info_t info;
    lh_pattern_scan(pat, pn, &info);
    int e = info.chain + (info.anchored ? 0 : 1);
    if (info.chain >= 1 && e >= 2 && (double)e * log10((double)n) > LH_PATTERN_MAX_LOG10)
      return luaL_error(L,
                        "pattern '%.40s' is too expensive for a subject of %d bytes (%d "
                        "overlapping quantified items): match a shorter string or use plain "
                        "find",
                        pat, (int)n, info.chain);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

void lh_pattern_guard_install(lua_State *L) {
  static const char *const names[] = {"find", "match", "gmatch", "gsub"};
  lua_getglobal(L, "string");
  for (size_t i = 0; i < LH_ARRAY_SIZE(names); i++) {
    lua_getfield(L, -1, names[i]);
    lua_pushboolean(L, i == 0); /* only find has a `plain` argument */
    lua_pushcclosure(L, guarded_pattern_call, 2);
    lua_setfield(L, -2, names[i]);
  }
  lua_pop(L, 1);
}

/* problem(p) -> nil when p is a well-formed pattern without back-references, else why not. */
static int l_problem(lua_State *L) {
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  lh_pattern_info_t info;
  lh_pattern_scan(p, n, &info);
  if (info.problem)
    lua_pushstring(L, info.problem);
  else if (info.backrefs)
    lua_pushliteral(L, "back-references are not supported");
  else
    lua_pushnil(L);
  return 1;
}

int luaopen_luahost_pattern(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_problem);
  lua_setfield(L, -2, "problem");
  return 1;
}
