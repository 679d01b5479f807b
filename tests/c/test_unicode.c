/* test_unicode.c: unit tests of the identity rules (lua-bindings/unicode.c): NFC, NFKC_Casefold
 * keys, confusable skeletons and the refusals of check_name, on the examples. */
#include <lauxlib.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "lh.h"
#include "lh_test.h"
#include "memory.h"
#include "unicode.h"

typedef int (*fn_t)(const char *, size_t, char **, size_t *);

/* Runs fn on s and compares with want (NULL: expects the error code rc_want). */
static void check_fn(fn_t fn, const char *s, const char *want, int rc_want) {
  char *out = NULL;
  size_t n = 0;
  int rc = fn(s, strlen(s), &out, &n);
  LH_CHECK_INT(rc, want ? 0 : rc_want);
  if (want != NULL && rc == 0) {
    LH_CHECK_STR(out, want);
    LH_CHECK_INT(n, strlen(want));
  }
  free(out);
}

/* 1 when fn gives a and b the same result. */
static int same(fn_t fn, const char *a, const char *b) {
  char *x = NULL, *y = NULL;
  size_t xn = 0, yn = 0;
  int eq = fn(a, strlen(a), &x, &xn) == 0 && fn(b, strlen(b), &y, &yn) == 0 && xn == yn &&
           memcmp(x, y, xn) == 0;
  free(x);
  free(y);
  return eq;
}

static void test_nfc_composes(void) {
  check_fn(lh_unicode_nfc, "E\xcc\x81mile", "\xc3\x89mile", 0); /* E + combining acute -> É */
  check_fn(lh_unicode_nfc, "alice", "alice", 0);
  check_fn(lh_unicode_nfc, "", "", 0);
  /* NFC keeps compatibility characters: fullwidth b stays fullwidth. */
  check_fn(lh_unicode_nfc, "\xef\xbd\x82", "\xef\xbd\x82", 0);
}

static void test_key_is_caseless_and_compatibility_normalised(void) {
  check_fn(lh_unicode_key, "STRASSE", "strasse", 0);
  check_fn(lh_unicode_key,
           "stra\xc3\x9f"
           "e",
           "strasse", 0);                                                     /* ß folds to ss */
  check_fn(lh_unicode_key, "\xef\xbd\x82\xef\xbd\x8f\xef\xbd\x82", "bob", 0); /* fullwidth */
  LH_CHECK(same(lh_unicode_key, "\xc3\x89mile", "\xc3\xa9mile"));             /* É / é */
  LH_CHECK(same(lh_unicode_key, "E\xcc\x81mile", "\xc3\xa9mile"));            /* NFD / NFC */
  LH_CHECK(!same(lh_unicode_key, "root", "\xd1\x80oot"));                     /* Cyrillic р */
  /* Default-ignorable characters vanish from the key. */
  check_fn(lh_unicode_key,
           "a\xe2\x80\x8b"
           "b",
           "ab", 0);
}

static void test_skeleton_catches_confusables(void) {
  LH_CHECK(same(lh_unicode_skeleton, "cop", "\xd1\x81\xd0\xbe\xd1\x80")); /* Cyrillic сор */
  LH_CHECK(same(lh_unicode_skeleton, "root", "r\xd0\xbeot"));             /* Cyrillic о */
  LH_CHECK(same(lh_unicode_skeleton, "paypal", "p\xd0\xb0yp\xd0\xb0l"));
  LH_CHECK(same(lh_unicode_skeleton, "rn", "m"));
  LH_CHECK(!same(lh_unicode_skeleton, "alice", "bob"));
}

static void test_errors(void) {
  check_fn(lh_unicode_key, "\xff\xfe", NULL, LH_EINVAL);          /* ill-formed UTF-8 */
  check_fn(lh_unicode_nfc, "\xc3", NULL, LH_EINVAL);              /* truncated sequence */
  check_fn(lh_unicode_skeleton, "\xed\xa0\x80", NULL, LH_EINVAL); /* encoded surrogate */
  char *out = NULL;
  size_t n = 0;
  LH_CHECK_INT(lh_unicode_key("a\0b", 3, &out, &n), LH_EINVAL);
  char *big = malloc(LH_UNICODE_MAX_BYTES + 2);
  memset(big, 'a', LH_UNICODE_MAX_BYTES + 1);
  big[LH_UNICODE_MAX_BYTES + 1] = '\0';
  check_fn(lh_unicode_key, big, NULL, LH_ELIMIT);
  LH_CHECK_INT(lh_unicode_check_name(big, strlen(big)), LH_NAME_TOO_LONG);
  free(big);
}

static lh_name_verdict_t verdict(const char *s) {
  return lh_unicode_check_name(s, strlen(s));
}

static void test_check_name_accepts_ordinary_names(void) {
  LH_CHECK_INT(verdict("alice"), LH_NAME_OK);
  LH_CHECK_INT(verdict("Alice_01.b-c@d"), LH_NAME_OK);
  LH_CHECK_INT(verdict("\xc3\x89mile Zola"), LH_NAME_OK); /* inner space */
  LH_CHECK_INT(verdict("stra\xc3\x9f"
                       "e"),
               LH_NAME_OK);
  LH_CHECK_INT(verdict("\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd"), LH_NAME_OK); /* Cyrillic */
  LH_CHECK_INT(verdict("\xe5\xb1\xb1\xe7\x94\xb0\xe3\x81\x9f\xe3\x82\x8d\xe3\x81\x86"),
               LH_NAME_OK); /* Han + Hiragana */
  LH_CHECK_INT(verdict("\xce\xb1\xce\xbb\xce\xad\xce\xbe\xce\xb1\xce\xbd\xce\xb4\xcf\x81\xce\xbf"
                       "\xcf\x82"),
               LH_NAME_OK); /* Greek */
  /* Latin with one other Recommended script but Cyrillic and Greek is "moderately
   * restrictive"; Latin with Han and Hiragana is "highly restrictive". */
  LH_CHECK_INT(verdict("ali\xd9\x85"), LH_NAME_OK);                 /* Latin + Arabic */
  LH_CHECK_INT(verdict("abc\xe5\xb1\xb1\xe3\x81\x9f"), LH_NAME_OK); /* Latin + Han + Hira */
}

static void test_check_name_refusals(void) {
  LH_CHECK_INT(verdict(""), LH_NAME_EMPTY);
  LH_CHECK_INT(verdict("a\x01"
                       "b"),
               LH_NAME_CONTROL);
  LH_CHECK_INT(verdict("a\xc2\x85"
                       "b"),
               LH_NAME_CONTROL); /* NEL (C1) */
  LH_CHECK_INT(verdict("a\xe2\x80\xa8"
                       "b"),
               LH_NAME_CONTROL);                             /* LINE SEPARATOR */
  LH_CHECK_INT(verdict("ro\xe2\x80\x8bot"), LH_NAME_FORMAT); /* zero-width space */
  LH_CHECK_INT(verdict("abc\xe2\x80\xae"
                       "def"),
               LH_NAME_FORMAT);                                    /* RLO */
  LH_CHECK_INT(verdict("a\xef\xbb\xbf"), LH_NAME_FORMAT);          /* BOM */
  LH_CHECK_INT(verdict("a\xee\x80\x80"), LH_NAME_PRIVATE_USE);     /* U+E000 */
  LH_CHECK_INT(verdict("a\xf4\x8f\xbf\xbd"), LH_NAME_PRIVATE_USE); /* U+10FFFD (plane 16) */
  LH_CHECK_INT(verdict("a\xf0\xb0\x80\x80\xf3\x80\x80\x80"), LH_NAME_UNASSIGNED); /* U+C0000 */
  LH_CHECK_INT(verdict("a\xcd\xb8"), LH_NAME_UNASSIGNED);                         /* U+0378 */
  LH_CHECK_INT(verdict("root "), LH_NAME_WHITESPACE_EDGE);
  LH_CHECK_INT(verdict(" root"), LH_NAME_WHITESPACE_EDGE);
  LH_CHECK_INT(verdict("root\xe3\x80\x80"), LH_NAME_WHITESPACE_EDGE); /* ideographic space */
  LH_CHECK_INT(verdict("   "), LH_NAME_WHITESPACE_EDGE);
  LH_CHECK_INT(verdict("\xe1\x85\x9f\xe1\x85\x9f"), LH_NAME_EMPTY); /* Hangul fillers */
  LH_CHECK_INT(verdict("\xd1\x80oot"), LH_NAME_MIXED_SCRIPT);       /* Cyrillic р + Latin */
  LH_CHECK_INT(verdict("p\xd0\xb0yp\xd0\xb0l"), LH_NAME_MIXED_SCRIPT);
  LH_CHECK_INT(verdict("alpha\xce\xb2"), LH_NAME_MIXED_SCRIPT);  /* Latin + Greek */
  LH_CHECK_INT(verdict("\xd1\x81\xd0\xbe\xd1\x80"), LH_NAME_OK); /* all Cyrillic */
  LH_CHECK_INT(verdict("a\xcc\x81\xcc\x81"), LH_NAME_INVISIBLE); /* repeated mark */
  /* two white-space characters in a row look like one */
  LH_CHECK_INT(verdict("john  smith"), LH_NAME_WHITESPACE_RUN);
  LH_CHECK_INT(verdict("john \xe3\x80\x80smith"), LH_NAME_WHITESPACE_RUN); /* + ideographic space */
  LH_CHECK_INT(verdict("john smith"), LH_NAME_OK);
  LH_CHECK_STR(lh_name_verdict_str(LH_NAME_WHITESPACE_RUN), "whitespace_run");
  LH_CHECK_STR(lh_name_verdict_str(LH_NAME_ERROR), "error");
  LH_CHECK_INT(verdict("\xff"), LH_NAME_BAD_UTF8);
  LH_CHECK_STR(lh_name_verdict_str(LH_NAME_MIXED_SCRIPT), "mixed_script");
  LH_CHECK_STR(lh_name_verdict_str(LH_NAME_OK), "ok");
  LH_CHECK_STR(lh_name_verdict_str((lh_name_verdict_t)99), "error");
}

/* The Lua module: when copying a result into a Lua string fails (the task's memory share is
 * spent), the C result is still freed. 1000 refused copies of a 2730-byte result would leak
 * ~3 MB (seen in malloc's counters here; LeakSanitizer reports it in the sanitizer build). */
static void test_module_frees_the_result_when_the_copy_fails(void) {
  static lh_budget_t budget;
  static lh_memory_t mem;
  lua_State *L = lh_memory_newstate(&mem, &budget, 64u << 20);
  LH_CHECK(L != NULL);
  if (!L)
    return;
  lua_pushcfunction(L, luaopen_luahost_unicode);
  LH_CHECK_INT(lua_pcall(L, 0, 1, 0), 0);
  lua_getfield(L, -1, "nfc"); /* [mod, nfc] */
  char in[4096];
  size_t n = 0;
  while (n + 3 < sizeof in) { /* E + combining acute: composes, so the result is a new string */
    memcpy(in + n, "E\xcc\x81", 3);
    n += 3;
  }
  struct mallinfo2 before = mallinfo2();
  int refused = 0;
  for (int i = 0; i < 1000; i++) {
    lua_pushvalue(L, -1);
    lua_pushlstring(L, in, n);    /* [mod, nfc, nfc, in] */
    lh_memory_arm(&mem, 0, 1024); /* room for the box, not for the 2730-byte string */
    int rc = lua_pcall(L, 1, 1, 0);
    lh_memory_disarm(&mem);
    refused += rc == LUA_ERRMEM;
    lua_pop(L, 1);
  }
  LH_CHECK_INT(refused, 1000);
  lua_gc(L, LUA_GCCOLLECT, 0);
  struct mallinfo2 after = mallinfo2();
  size_t grew = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
  LH_CHECK(after.uordblks + after.hblkhd < before.uordblks + before.hblkhd || grew < (1u << 20));
  /* Unrefused, the same call answers. */
  lua_pushlstring(L, in, n);
  LH_CHECK_INT(lua_pcall(L, 1, 1, 0), 0);
  LH_CHECK_INT(lua_objlen(L, -1), n / 3 * 2);
  lua_close(L);
}

int main(void) {
  LH_RUN(test_nfc_composes);
  LH_RUN(test_key_is_caseless_and_compatibility_normalised);
  LH_RUN(test_skeleton_catches_confusables);
  LH_RUN(test_errors);
  LH_RUN(test_check_name_accepts_ordinary_names);
  LH_RUN(test_check_name_refusals);
  LH_RUN(test_module_frees_the_result_when_the_copy_fails);
  return lh_test_done();
}
