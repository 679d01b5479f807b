/* unicode.c: luahost.unicode (see unicode.h). Owns the process-wide ICU normalisers and the
 * spoof checker, the UTF-8 <-> UTF-16 conversions around them, the per-code-point rules of a name
 * and the Lua module. */
#include "unicode.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/uspoof.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>

#include "lh.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static const UNormalizer2 *g_nfc, *g_nfkc_cf;
static USpoofChecker *g_spoof;

static void icu_init(void) {
  UErrorCode st = U_ZERO_ERROR;
  g_nfc = unorm2_getNFCInstance(&st);
  if (U_FAILURE(st)) {
    g_nfc = NULL;
  }
  st = U_ZERO_ERROR;
  g_nfkc_cf = unorm2_getNFKCCasefoldInstance(&st);
  if (U_FAILURE(st)) {
    g_nfkc_cf = NULL;
  }
  st = U_ZERO_ERROR;
  USpoofChecker *sc = uspoof_open(&st);
  if (U_SUCCESS(st)) {
    /* Setting the level turns the restriction-level check on; INVISIBLE adds the UTS #39 check
     * for a combining mark repeated on one base character. */
    uspoof_setChecks(sc, USPOOF_RESTRICTION_LEVEL | USPOOF_INVISIBLE, &st);
    uspoof_setRestrictionLevel(sc, USPOOF_MODERATELY_RESTRICTIVE);
  }
  if (U_FAILURE(st)) {
    if (sc != NULL) {
      uspoof_close(sc);
    }
    sc = NULL;
  }
  g_spoof = sc;
  /* The checker lives as long as the process: ICU's own data does too. */
}

static int ready(void) {
  pthread_once(&g_once, icu_init);
  return g_nfc != NULL && g_nfkc_cf != NULL && g_spoof != NULL;
}

/* UTF-8 (no NUL, well-formed) to a malloc'd UTF-16 buffer. */
static int to_utf16(const char *s, size_t len, UChar **out, int32_t *outlen) {
  if (len > LH_UNICODE_MAX_BYTES) {
    return LH_ELIMIT;
  }
  if (memchr(s, '\0', len) != NULL) {
    return LH_EINVAL;
  }
  UChar *buf = malloc((len + 1) * sizeof *buf); /* never more units than bytes */
  if (buf == NULL) {
    return LH_ENOMEM;
  }
  UErrorCode st = U_ZERO_ERROR;
  int32_t n = 0;
  u_strFromUTF8(buf, (int32_t)len + 1, &n, s, (int32_t)len, &st);
  if (U_FAILURE(st)) {
    free(buf);
    return st == U_INVALID_CHAR_FOUND || st == U_ILLEGAL_CHAR_FOUND ? LH_EINVAL : LH_EIO;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

static int to_utf8(const UChar *u, int32_t ulen, char **out, size_t *outlen) {
  size_t cap = (size_t)ulen * 3 + 1; /* a UTF-16 unit never becomes more than 3 bytes */
  char *buf = malloc(cap);
  if (buf == NULL) {
    return LH_ENOMEM;
  }
  UErrorCode st = U_ZERO_ERROR;
  int32_t n = 0;
  u_strToUTF8(buf, (int32_t)cap, &n, u, ulen, &st);
  if (U_FAILURE(st)) {
    free(buf);
    return LH_EIO;
  }
  buf[n] = '\0';
  *out = buf;
  *outlen = (size_t)n;
  return 0;
}

/* Applies norm to u into a malloc'd buffer (sized by ICU's preflight). */
static int normalize16(const UNormalizer2 *norm, const UChar *u, int32_t ulen, UChar **out,
                       int32_t *outlen) {
  UErrorCode st = U_ZERO_ERROR;
  int32_t need = unorm2_normalize(norm, u, ulen, NULL, 0, &st);
  if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) {
    return LH_EIO;
  }
  UChar *buf = malloc(((size_t)need + 1) * sizeof *buf);
  if (buf == NULL) {
    return LH_ENOMEM;
  }
  st = U_ZERO_ERROR;
  int32_t n = unorm2_normalize(norm, u, ulen, buf, need + 1, &st);
  if (U_FAILURE(st)) {
    free(buf);
    return LH_EIO;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

static int skeleton16(const UChar *u, int32_t ulen, UChar **out, int32_t *outlen) {
  UErrorCode st = U_ZERO_ERROR;
  int32_t need = uspoof_getSkeleton(g_spoof, 0, u, ulen, NULL, 0, &st);
  if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st)) {
    return LH_EIO;
  }
  UChar *buf = malloc(((size_t)need + 1) * sizeof *buf);
  if (buf == NULL) {
    return LH_ENOMEM;
  }
  st = U_ZERO_ERROR;
  int32_t n = uspoof_getSkeleton(g_spoof, 0, u, ulen, buf, need + 1, &st);
  if (U_FAILURE(st)) {
    free(buf);
    return LH_EIO;
  }
  *out = buf;
  *outlen = n;
  return 0;
}

typedef enum { OP_NFC, OP_KEY, OP_SKELETON } op_t;

static int transform(op_t op, const char *s, size_t len, char **out, size_t *outlen) {
  if (!ready()) {
    return LH_EIO;
  }
  UChar *u = NULL, *r = NULL;
  int32_t ulen = 0, rlen = 0;
  int rc = to_utf16(s, len, &u, &ulen);
  if (rc != 0) {
    return rc;
  }
  switch (op) {
  case OP_NFC: rc = normalize16(g_nfc, u, ulen, &r, &rlen); break;
  case OP_KEY: rc = normalize16(g_nfkc_cf, u, ulen, &r, &rlen); break;
  case OP_SKELETON: rc = skeleton16(u, ulen, &r, &rlen); break;
  }
  free(u);
  if (rc != 0) {
    return rc;
  }
  rc = to_utf8(r, rlen, out, outlen);
  free(r);
  return rc;
}

int lh_unicode_nfc(const char *s, size_t len, char **out, size_t *outlen) {
  return transform(OP_NFC, s, len, out, outlen);
}

int lh_unicode_key(const char *s, size_t len, char **out, size_t *outlen) {
  return transform(OP_KEY, s, len, out, outlen);
}

int lh_unicode_skeleton(const char *s, size_t len, char **out, size_t *outlen) {
  return transform(OP_SKELETON, s, len, out, outlen);
}

const char *lh_name_verdict_str(lh_name_verdict_t v) {
  static const char *const names[] = {"ok",
                                      "bad_utf8",
                                      "too_long",
                                      "control",
                                      "format",
                                      "unassigned",
                                      "private_use",
                                      "surrogate",
                                      "whitespace_edge",
                                      "empty",
                                      "mixed_script",
                                      "invisible",
                                      "whitespace_run",
                                      "error"};
  return (unsigned)v < LH_ARRAY_SIZE(names) ? names[v] : "error";
}

/* The general-category rules, code point by code point. */
static lh_name_verdict_t check_code_points(const UChar *u, int32_t n) {
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(u, i, n, c);
    switch (u_charType(c)) {
    case U_CONTROL_CHAR: return LH_NAME_CONTROL;
    case U_FORMAT_CHAR: return LH_NAME_FORMAT;
    case U_UNASSIGNED: return LH_NAME_UNASSIGNED;
    case U_PRIVATE_USE_CHAR: return LH_NAME_PRIVATE_USE;
    case U_SURROGATE: return LH_NAME_SURROGATE;
    /* Line and paragraph separators are white space that breaks a line: never in a name. */
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR: return LH_NAME_CONTROL;
    default: break;
    }
  }
  return LH_NAME_OK;
}

static int is_space_at(const UChar *u, int32_t n, int first) {
  UChar32 c;
  if (first) {
    int32_t i = 0;
    U16_NEXT(u, i, n, c);
  } else {
    int32_t i = n;
    U16_PREV(u, 0, i, c);
  }
  return u_isUWhiteSpace(c) || u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT);
}

/* Two white-space characters in a row: HTML and most fonts show "john  smith" as "john smith", so
 * such a name would look like another account's. */
static int has_space_run(const UChar *u, int32_t n) {
  int prev = 0;
  for (int32_t i = 0; i < n;) {
    UChar32 c;
    U16_NEXT(u, i, n, c);
    int space = u_isUWhiteSpace(c);
    if (space && prev)
      return 1;
    prev = space;
  }
  return 0;
}

lh_name_verdict_t lh_unicode_check_name(const char *s, size_t len) {
  if (!ready()) {
    return LH_NAME_ERROR;
  }
  UChar *u = NULL, *k = NULL;
  int32_t n = 0, kn = 0;
  int rc = to_utf16(s, len, &u, &n);
  if (rc != 0) {
    return rc == LH_EINVAL ? LH_NAME_BAD_UTF8 : rc == LH_ELIMIT ? LH_NAME_TOO_LONG : LH_NAME_ERROR;
  }
  lh_name_verdict_t v = n == 0 ? LH_NAME_EMPTY : check_code_points(u, n);
  if (v == LH_NAME_OK) {
    /* Default-ignorable characters (U+115F HANGUL CHOSEONG FILLER, ...) vanish under
     * NFKC_Casefold: a name made only of them has an empty key. */
    rc = normalize16(g_nfkc_cf, u, n, &k, &kn);
    if (rc != 0) {
      v = LH_NAME_ERROR;
    } else if (kn == 0) {
      v = LH_NAME_EMPTY;
    }
    free(k);
  }
  if (v == LH_NAME_OK && (is_space_at(u, n, 1) || is_space_at(u, n, 0))) {
    v = LH_NAME_WHITESPACE_EDGE;
  }
  if (v == LH_NAME_OK && has_space_run(u, n)) {
    v = LH_NAME_WHITESPACE_RUN;
  }
  if (v == LH_NAME_OK) {
    UErrorCode st = U_ZERO_ERROR;
    int32_t bits = uspoof_check2(g_spoof, u, n, NULL, &st);
    if (U_FAILURE(st)) {
      v = LH_NAME_ERROR;
    } else if (bits & USPOOF_RESTRICTION_LEVEL) {
      v = LH_NAME_MIXED_SCRIPT;
    } else if (bits & USPOOF_INVISIBLE) {
      v = LH_NAME_INVISIBLE;
    }
  }
  free(u);
  return v;
}

/* ---- Lua module ---------------------------------------------------------------------------- */

static int push_code(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, rc == LH_EINVAL ? "bad_utf8" : rc == LH_ELIMIT ? "too_long" : "error");
  return 2;
}

/* The malloc'd result of a transform while it is copied into a Lua string: a userdata box whose
 * __gc frees it, so a copy that raises (out of memory) does not leak it. */
#define LH_UNICODE_BOX "luahost.unicode.box"

static int box_gc(lua_State *L) {
  char **box = lua_touserdata(L, 1);
  free(*box);
  *box = NULL;
  return 0;
}

static int push_transform(lua_State *L, op_t op) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char **box = lua_newuserdata(L, sizeof(*box)); /* [s, box] */
  *box = NULL;
  luaL_getmetatable(L, LH_UNICODE_BOX); /* [s, box, mt] */
  lua_setmetatable(L, -2);              /* [s, box] */
  size_t outlen = 0;
  int rc = transform(op, s, len, box, &outlen);
  if (rc != 0) {
    return push_code(L, rc);
  }
  lua_pushlstring(L, *box, outlen); /* [s, box, str]; on a raise the box's __gc frees *box */
  free(*box);
  *box = NULL;
  return 1;
}

static int l_nfc(lua_State *L) {
  return push_transform(L, OP_NFC);
}

static int l_key(lua_State *L) {
  return push_transform(L, OP_KEY);
}

static int l_skeleton(lua_State *L) {
  return push_transform(L, OP_SKELETON);
}

static int l_check_name(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lh_name_verdict_t v = lh_unicode_check_name(s, len);
  if (v == LH_NAME_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, lh_name_verdict_str(v));
  return 2;
}

int luaopen_luahost_unicode(lua_State *L) {
  static const luaL_Reg fns[] = {{"nfc", l_nfc},
                                 {"key", l_key},
                                 {"skeleton", l_skeleton},
                                 {"check_name", l_check_name},
                                 {NULL, NULL}};
  luaL_newmetatable(L, LH_UNICODE_BOX); /* [mt] */
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  return 1;
}
