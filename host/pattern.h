/* pattern.h: the one reader of Lua patterns in the host. It checks that a pattern is well formed
 * (validate.lua's schema check asks it through the internal module `luahost.pattern`) and measures
 * how much backtracking a pattern can cause, for the pattern guard that wraps string.find, match,
 * gmatch and gsub in every script state. */
#ifndef LH_PATTERN_H
#define LH_PATTERN_H

#include <lua.h>
#include <stddef.h>

typedef struct {
  int chain;           /* longest chain of quantified items that can take each other's characters */
  int anchored;        /* starts with '^' */
  int backrefs;        /* has %1..%9 */
  const char *problem; /* why the pattern is malformed, or NULL */
} lh_pattern_info_t;

/* Reads pattern p (n bytes). Never fails: a malformed pattern gets `problem` set and the chain of
 * what was read before the problem. */
void lh_pattern_scan(const char *p, size_t n, lh_pattern_info_t *info);

/* Replaces string.find, match, gmatch and gsub of L's string library with guarded versions that
 * refuse a call whose worst case on the given subject passes about 1e9 steps. Call before any
 * module is loaded. */
void lh_pattern_guard_install(lua_State *L);

/* luaopen of the internal module `luahost.pattern`: problem(p) -> nil | message. */
int luaopen_luahost_pattern(lua_State *L);

#endif
