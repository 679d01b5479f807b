/* unicode.h: luahost.unicode, the identity rules for names, on ICU (normalisation, case folding
 * and the UTS #39 spoof checker).
 *
 * A C core that never touches a lua_State (unit tests call it directly) and the Lua module on top.
 * Every function takes UTF-8 text of at most LH_UNICODE_MAX_BYTES bytes and returns 0 or a
 * negative LH_E* code: LH_EINVAL for ill-formed UTF-8 or a NUL byte, LH_ELIMIT for longer input,
 * LH_ENOMEM, LH_EIO when ICU fails. Results are NUL-terminated malloc'd UTF-8 that the caller
 * frees. The ICU objects are built once per process (pthread_once) and only read afterwards,
 * which ICU documents as thread-safe for normalisers and for the checks of a configured checker.
 *
 * Lua API (`local unicode = require "luahost.unicode"`); a non-string argument raises, anything
 * about the text returns nil, code ("bad_utf8", "too_long", "error"):
 *   unicode.nfc(s)         -> s in Normalization Form C
 *   unicode.key(s)         -> NFKC_Casefold(s): the caseless, compatibility-normalised identity
 *   unicode.skeleton(s)    -> the UTS #39 confusable skeleton of s
 *   unicode.check_name(s)  -> true | false, reason: whether s (already NFC) may be a name;
 *        reasons: "bad_utf8", "too_long", "control", "format", "unassigned", "private_use",
 *        "surrogate", "whitespace_edge", "empty", "mixed_script", "invisible", "whitespace_run" */
#ifndef LH_UNICODE_H
#define LH_UNICODE_H

#include <lua.h>
#include <stddef.h>

#define LH_UNICODE_MAX_BYTES 4096

typedef enum {
  LH_NAME_OK = 0,
  LH_NAME_BAD_UTF8,
  LH_NAME_TOO_LONG,
  LH_NAME_CONTROL,
  LH_NAME_FORMAT,
  LH_NAME_UNASSIGNED,
  LH_NAME_PRIVATE_USE,
  LH_NAME_SURROGATE,
  LH_NAME_WHITESPACE_EDGE,
  LH_NAME_EMPTY,
  LH_NAME_MIXED_SCRIPT,
  LH_NAME_INVISIBLE,
  LH_NAME_WHITESPACE_RUN, /* two white-space characters in a row: "a  b" renders as "a b" */
  LH_NAME_ERROR           /* ICU failed (out of memory, missing data) */
} lh_name_verdict_t;

/* The stable reason string of a verdict ("ok" for LH_NAME_OK). */
const char *lh_name_verdict_str(lh_name_verdict_t v);

/* NFC, NFKC_Casefold and the confusable skeleton of s (len bytes) into *out (malloc'd, *outlen
 * bytes without the terminating NUL). */
int lh_unicode_nfc(const char *s, size_t len, char **out, size_t *outlen);
int lh_unicode_key(const char *s, size_t len, char **out, size_t *outlen);
int lh_unicode_skeleton(const char *s, size_t len, char **out, size_t *outlen);

/* The identity rules of a name: refuses control, format, unassigned, private-use and surrogate
 * code points, leading or trailing white space, a name whose NFKC_Casefold is empty, a mix of
 * scripts beyond UTS #39 "moderately restrictive", and invisible-character sequences (a repeated
 * combining mark). */
lh_name_verdict_t lh_unicode_check_name(const char *s, size_t len);

int luaopen_luahost_unicode(lua_State *L);

#endif
