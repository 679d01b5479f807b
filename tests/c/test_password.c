/* test_password.c: unit tests of the password C core (lua-bindings/password.c): hashing and
 * verification with argon2id and bcrypt, hashes made by other implementations, malformed hashes,
 * the NUL and 72-byte rules, needs_rehash, init validation, and the cost at default parameters. */
#include <string.h>
#include <time.h>

#include "config.h"
#include "lh.h"
#include "lh_test.h"
#include "password.h"

/* Low costs keep the suite fast; the timing test uses the production defaults. */
static const lh_password_params_t fast_argon2 = {LH_PASSWORD_ARGON2ID, 1, 8192, 12};
static const lh_password_params_t fast_bcrypt = {LH_PASSWORD_BCRYPT, 1, 8192, 4};

/* Hashes made by other implementations: Python's bcrypt 5.0 ($2b$, $2a$) and the PHP manual's
 * password_verify example ($2y$). */
static const char py_2b[] = "$2b$10$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqW";
static const char py_2b_pw[] = "correct horse battery staple";
static const char py_2a[] = "$2a$05$3Gsk8otu1rwkfuMOlx2b0.90g8vaYHyJjHNaFIVMGe3uPaeSRmAMy";
static const char py_2a_pw[] = "hunter2";
static const char php_2y_07[] = "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq";
static const char php_2y_10[] = "$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a";
static const char php_pw[] = "rasmuslerdorf";

static void config_init(lh_config_t *cfg, const char *scheme, int t, int m_kib, int cost) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->password_scheme, sizeof cfg->password_scheme, "%s", scheme);
  cfg->argon2_t = t;
  cfg->argon2_m_kib = m_kib;
  cfg->bcrypt_cost = cost;
}

static double ms_since(unsigned long long start) {
  return (double)(lh_now_ns() - start) / 1e6;
}

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int verify_str(const char *pw, const char *hash) {
  return lh_password_verify(pw, strlen(pw), hash);
}

static void test_argon2id_round_trip(void) {
  char h[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "s3cret!", 7, h, sizeof h), 0);
  LH_CHECK(starts_with(h, "$argon2id$v=19$m=8192,t=1,p=1$"));
  LH_CHECK_INT(verify_str("s3cret!", h), 1);
  LH_CHECK_INT(verify_str("s3cret?", h), 0);
  LH_CHECK_INT(verify_str("", h), 0);
  /* Two hashes of one password differ (random salt) and both verify. */
  char h2[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "s3cret!", 7, h2, sizeof h2), 0);
  LH_CHECK(strcmp(h, h2) != 0);
  LH_CHECK_INT(verify_str("s3cret!", h2), 1);
}

static void test_bcrypt_round_trip(void) {
  char h[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, "s3cret!", 7, h, sizeof h), 0);
  LH_CHECK(starts_with(h, "$2b$04$"));
  LH_CHECK_INT(strlen(h), 60);
  LH_CHECK_INT(verify_str("s3cret!", h), 1);
  LH_CHECK_INT(verify_str("s3cret?", h), 0);
  LH_CHECK_INT(verify_str("", h), 0);
}

static void test_empty_password(void) {
  char h[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "", 0, h, sizeof h), 0);
  LH_CHECK_INT(verify_str("", h), 1);
  LH_CHECK_INT(verify_str("x", h), 0);
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, "", 0, h, sizeof h), 0);
  LH_CHECK_INT(verify_str("", h), 1);
}

static void test_nul_rejected(void) {
  char h[LH_PASSWORD_HASH_MAX];
  static const char pw[] = "abc\0def";
  LH_CHECK_INT(lh_password_hash(&fast_argon2, pw, 7, h, sizeof h), LH_EINVAL);
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, pw, 7, h, sizeof h), LH_EINVAL);
  /* bcrypt would otherwise see "abc": a NUL must not make "abc\0anything" match "abc". */
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, "abc", 3, h, sizeof h), 0);
  LH_CHECK_INT(lh_password_verify(pw, 7, h), LH_EINVAL);
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "abc", 3, h, sizeof h), 0);
  LH_CHECK_INT(lh_password_verify(pw, 7, h), LH_EINVAL);
}

static void test_bcrypt_72_bytes(void) {
  char pw[200], h[LH_PASSWORD_HASH_MAX];
  memset(pw, 'a', sizeof pw);
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, pw, 72, h, sizeof h), 0);
  LH_CHECK_INT(lh_password_verify(pw, 72, h), 1);
  LH_CHECK_INT(lh_password_verify(pw, 71, h), 0);
  /* Verification never refuses a length; bcrypt itself only reads the first 72 bytes. */
  LH_CHECK_INT(lh_password_verify(pw, 73, h), 1);
  LH_CHECK_INT(lh_password_verify(pw, sizeof pw, h), 1);
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, pw, 73, h, sizeof h), LH_EINVAL);
}

static void test_argon2id_long_password(void) {
  char pw[4096], h[LH_PASSWORD_HASH_MAX];
  memset(pw, 'a', sizeof pw);
  LH_CHECK_INT(lh_password_hash(&fast_argon2, pw, sizeof pw, h, sizeof h), 0);
  LH_CHECK_INT(lh_password_verify(pw, sizeof pw, h), 1);
  /* Unlike bcrypt, argon2id sees every byte. */
  pw[sizeof pw - 1] = 'b';
  LH_CHECK_INT(lh_password_verify(pw, sizeof pw, h), 0);
  LH_CHECK_INT(lh_password_verify(pw, 73, h), 0);
}

static void test_external_bcrypt_hashes(void) {
  LH_CHECK_INT(verify_str(py_2b_pw, py_2b), 1);
  LH_CHECK_INT(verify_str("correct horse battery stapl", py_2b), 0);
  LH_CHECK_INT(verify_str(py_2a_pw, py_2a), 1);
  LH_CHECK_INT(verify_str("hunter3", py_2a), 0);
  LH_CHECK_INT(verify_str(php_pw, php_2y_07), 1);
  LH_CHECK_INT(verify_str(php_pw, php_2y_10), 1);
  LH_CHECK_INT(verify_str("rasmuslerdorF", php_2y_10), 0);
}

static void test_malformed_hashes(void) {
  static const char *bad[] = {
      "",
      "plain text",
      "$1$abcdefgh$abcdefghijklmnopqrstuv", /* md5-crypt: not accepted */
      "$2b$10$short",
      "$2b$99$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqW", /* cost out of range */
      "$2b$03$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqW",
      "$2b$1x$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqW",
      "$2b$10$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMq!",  /* bad character */
      "$2b$10$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqWW", /* 61 characters */
      "$2x$10$RDSZuqeJDnu0e/lrSprHMe13HKuLDTh4PrHgcLuilTwzeo4xvhMqW",  /* unknown variant */
      "$argon2id$",
      "$argon2id$v=19$m=8192,t=1,p=1$",
      "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0$",
      "$argon2id$v=19$m=8192,t=1,p=1$!!!!$aGFzaGhhc2hoYXNoaGFzaA",
      "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
      "$argon2i$v=19$m=8192,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
  };
  for (size_t i = 0; i < LH_ARRAY_SIZE(bad); i++) {
    int v = verify_str("password", bad[i]);
    int r = lh_password_needs_rehash(&fast_argon2, bad[i]);
    if (v != LH_EINVAL || r != LH_EINVAL)
      fprintf(stderr, "  malformed hash %zu accepted: verify %d, needs_rehash %d: %s\n", i, v, r,
              bad[i]);
    LH_CHECK_INT(v, LH_EINVAL);
    LH_CHECK_INT(r, LH_EINVAL);
  }
  /* A real hash with its digest cut short never matches. Whether it reads as malformed or as a
   * mismatch depends on the random digest (the shortened base64 may still decode to a shorter
   * digest, which argon2 accepts as a format); either refuses the login. */
  char h[LH_PASSWORD_HASH_MAX];
  for (int i = 0; i < 8; i++) {
    LH_CHECK_INT(lh_password_hash(&fast_argon2, "pw", 2, h, sizeof h), 0);
    h[strlen(h) - 5] = '\0';
    int v = verify_str("pw", h);
    LH_CHECK(v == 0 || v == LH_EINVAL);
  }
}

static void test_needs_rehash(void) {
  char a[LH_PASSWORD_HASH_MAX], b[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "pw", 2, a, sizeof a), 0);
  LH_CHECK_INT(lh_password_hash(&fast_bcrypt, "pw", 2, b, sizeof b), 0);

  lh_password_params_t p = fast_argon2;
  LH_CHECK_INT(lh_password_needs_rehash(&p, a), 0);
  LH_CHECK_INT(lh_password_needs_rehash(&p, b), 1); /* other scheme */
  LH_CHECK_INT(lh_password_needs_rehash(&p, py_2b), 1);
  p.argon2_t = 2;
  LH_CHECK_INT(lh_password_needs_rehash(&p, a), 1);
  p = fast_argon2;
  p.argon2_m_kib = 16384;
  LH_CHECK_INT(lh_password_needs_rehash(&p, a), 1);
  p = fast_argon2;
  p.bcrypt_cost = 10; /* irrelevant to argon2id hashes */
  LH_CHECK_INT(lh_password_needs_rehash(&p, a), 0);

  p = fast_bcrypt;
  LH_CHECK_INT(lh_password_needs_rehash(&p, b), 0);
  LH_CHECK_INT(lh_password_needs_rehash(&p, a), 1);
  p.bcrypt_cost = 10;
  LH_CHECK_INT(lh_password_needs_rehash(&p, b), 1);
  LH_CHECK_INT(lh_password_needs_rehash(&p, py_2b), 0);
  LH_CHECK_INT(lh_password_needs_rehash(&p, php_2y_10), 1); /* moved to $2b$ */
  p.bcrypt_cost = 5;
  LH_CHECK_INT(lh_password_needs_rehash(&p, py_2a), 1);
}

static void test_bad_arguments(void) {
  char h[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(&fast_argon2, "pw", 2, h, 60), LH_EINVAL); /* buffer too small */
  lh_password_params_t p = fast_bcrypt;
  p.bcrypt_cost = 32;
  LH_CHECK_INT(lh_password_hash(&p, "pw", 2, h, sizeof h), LH_EINVAL);
  p = fast_argon2;
  p.argon2_m_kib = 4;
  LH_CHECK_INT(lh_password_hash(&p, "pw", 2, h, sizeof h), LH_EINVAL);
  p.argon2_m_kib = 8192;
  p.argon2_t = 0;
  LH_CHECK_INT(lh_password_hash(&p, "pw", 2, h, sizeof h), LH_EINVAL);
}

static void test_init_validation(void) {
  lh_config_t cfg;
  char err[256] = "";
  config_init(&cfg, "md5", 1, 8192, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "password_scheme") != NULL);
  config_init(&cfg, "argon2id", 1, 4, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "argon2_m_kib") != NULL);
  config_init(&cfg, "argon2id", 0, 8192, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "argon2_t") != NULL);
  config_init(&cfg, "bcrypt", 1, 8192, 3);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "bcrypt_cost") != NULL);
  config_init(&cfg, "argon2id", 1, -8192, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), LH_EINVAL);
}

static void test_init_and_dummy(void) {
  lh_config_t cfg;
  char err[256] = "";
  config_init(&cfg, "bcrypt", 1, 8192, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), 0);
  LH_CHECK_INT(lh_password_params()->scheme, LH_PASSWORD_BCRYPT);
  LH_CHECK(starts_with(lh_password_dummy_hash(), "$2b$04$"));
  LH_CHECK_INT(verify_str("password", lh_password_dummy_hash()), 0);
  /* NULL parameters mean the configured ones. */
  char h[LH_PASSWORD_HASH_MAX];
  LH_CHECK_INT(lh_password_hash(NULL, "pw", 2, h, sizeof h), 0);
  LH_CHECK(starts_with(h, "$2b$04$"));
  LH_CHECK_INT(lh_password_needs_rehash(NULL, h), 0);

  config_init(&cfg, "argon2id", 1, 8192, 4);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), 0);
  LH_CHECK(starts_with(lh_password_dummy_hash(), "$argon2id$v=19$m=8192,t=1,p=1$"));
  LH_CHECK_INT(verify_str("password", lh_password_dummy_hash()), 0);
  LH_CHECK_INT(lh_password_needs_rehash(NULL, h), 1);
  LH_CHECK_INT(lh_password_needs_rehash(NULL, lh_password_dummy_hash()), 0);
  lh_password_cleanup();
  LH_CHECK_STR(lh_password_dummy_hash(), "");
}

/* Hashes and verifies once at the default parameters and prints how long each took. */
static void time_scheme(const char *name, const lh_password_params_t *p) {
  char h[LH_PASSWORD_HASH_MAX];
  unsigned long long t0 = lh_now_ns();
  LH_CHECK_INT(lh_password_hash(p, "correct horse", 13, h, sizeof h), 0);
  double hash_ms = ms_since(t0);
  t0 = lh_now_ns();
  LH_CHECK_INT(lh_password_verify("correct horse", 13, h), 1);
  double verify_ms = ms_since(t0);
  t0 = lh_now_ns();
  LH_CHECK_INT(lh_password_verify("wrong horse", 11, h), 0);
  double wrong_ms = ms_since(t0);
  printf("     %-34s hash %7.1f ms, verify %7.1f ms, wrong %7.1f ms\n", name, hash_ms, verify_ms,
         wrong_ms);
}

/* Measures both schemes at the shipped defaults (lh_config_defaults), which tests must not lower.
 */
static void test_default_params_timing(void) {
  lh_config_t cfg;
  char err[256] = "", name[64];
  lh_config_defaults(&cfg);
  LH_CHECK_INT(lh_password_init(&cfg, err, sizeof err), 0);
  lh_password_params_t argon = *lh_password_params(), bcrypt = argon;
  argon.scheme = LH_PASSWORD_ARGON2ID;
  bcrypt.scheme = LH_PASSWORD_BCRYPT;
  snprintf(name, sizeof name, "argon2id t=%u m=%u KiB:", argon.argon2_t, argon.argon2_m_kib);
  time_scheme(name, &argon);
  snprintf(name, sizeof name, "bcrypt cost %u:", bcrypt.bcrypt_cost);
  time_scheme(name, &bcrypt);
  /* The dummy hash costs what a real verify costs. */
  unsigned long long t0 = lh_now_ns();
  LH_CHECK_INT(verify_str("whatever", lh_password_dummy_hash()), 0);
  printf("     dummy verify (%s):%*s %7.1f ms\n", cfg.password_scheme, 14, "", ms_since(t0));
}

int main(void) {
  lh_config_t cfg;
  char err[256];
  config_init(&cfg, "argon2id", 1, 8192, 4);
  if (lh_password_init(&cfg, err, sizeof err) != 0) {
    fprintf(stderr, "lh_password_init: %s\n", err);
    return 1;
  }
  LH_RUN(test_argon2id_round_trip);
  LH_RUN(test_bcrypt_round_trip);
  LH_RUN(test_empty_password);
  LH_RUN(test_nul_rejected);
  LH_RUN(test_bcrypt_72_bytes);
  LH_RUN(test_argon2id_long_password);
  LH_RUN(test_external_bcrypt_hashes);
  LH_RUN(test_malformed_hashes);
  LH_RUN(test_needs_rehash);
  LH_RUN(test_bad_arguments);
  LH_RUN(test_init_validation);
  LH_RUN(test_init_and_dummy);
  LH_RUN(test_default_params_timing);
  lh_password_cleanup();
  return lh_test_done();
}
