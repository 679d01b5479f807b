/* test_jwt.c: unit tests of the JWT C core (lua-bindings/jwt.c): sign/verify round trips, every
 * rejection reason (algorithm confusion, signature, time claims, issuer and audience, size and
 * shape), secret rotation, init validation, and the cost of sign and verify. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "jwt.h"
#include <jwt.h>
#include "lh.h"
#include "lh_test.h"

#define NOW 1700000000LL
#define SECRET "0123456789abcdef0123456789abcdef-current"
#define PREVIOUS "0123456789abcdef0123456789abcdef-previous"
#define OTHER "0123456789abcdef0123456789abcdef-unknown"

static void config_init(lh_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->jwt_secret, sizeof cfg->jwt_secret, "%s", SECRET);
  cfg->token_ttl = 1800;
}

static int init_with(const lh_config_t *cfg) {
  char err[256] = "";
  int rc = lh_jwt_init(cfg, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "  lh_jwt_init: %s\n", err);
  return rc;
}

static void init_default(void) {
  lh_config_t cfg;
  config_init(&cfg);
  LH_CHECK_INT(init_with(&cfg), 0);
}

static void b64(const void *bin, size_t len, char *out, size_t outlen) {
  sodium_bin2base64(out, outlen, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Appends a string at out + *pos, truncating at outlen (tests use buffers that fit). */
static void append(char *out, size_t outlen, size_t *pos, const char *s) {
  size_t n = strlen(s);
  if (n >= outlen - *pos)
    n = outlen - *pos - 1;
  memcpy(out + *pos, s, n);
  *pos += n;
  out[*pos] = '\0';
}

/* Builds header.payload.signature by hand, HMAC-SHA256 with key (NULL: empty signature). */
static void make_token(const char *header, const char *payload, const char *key, char *out,
                       size_t outlen) {
  char h[512], p[8192], s[64] = "";
  size_t pos = 0;
  b64(header, strlen(header), h, sizeof h);
  b64(payload, strlen(payload), p, sizeof p);
  out[0] = '\0';
  append(out, outlen, &pos, h);
  append(out, outlen, &pos, ".");
  append(out, outlen, &pos, p);
  if (key) {
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)out, pos);
    crypto_auth_hmacsha256_final(&st, mac);
    b64(mac, sizeof mac, s, sizeof s);
  }
  append(out, outlen, &pos, ".");
  append(out, outlen, &pos, s);
}

static const char *hs256 = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Verifies token at now and returns the reason ("ok" on success). */
static const char *verify_at(const char *token, long long now) {
  json_t *claims = NULL;
  const char *reason = NULL;
  int rc = lh_jwt_verify(token, strlen(token), now, &claims, &reason);
  if (rc == 0) {
    json_decref(claims);
    return reason == NULL ? "ok" : "ok-with-reason";
  }
  return claims == NULL ? reason : "failed-with-claims";
}

static const char *verify_payload(const char *payload, long long now) {
  static char token[4096];
  make_token(hs256, payload, SECRET, token, sizeof token);
  return verify_at(token, now);
}

static void sign_simple(long long now, char *out, size_t outlen) {
  json_t *claims = json_pack("{s:s, s:i, s:b}", "sub", "user-1", "tv", 3, "admin", 1);
  LH_CHECK_INT(lh_jwt_sign(claims, now, out, outlen), 0);
  json_decref(claims);
}

static void test_round_trip(void) {
  init_default();
  char token[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, token, sizeof token);
  LH_CHECK(strncmp(token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0);
  json_t *claims = NULL;
  const char *reason = "unset";
  LH_CHECK_INT(lh_jwt_verify(token, strlen(token), NOW + 10, &claims, &reason), 0);
  LH_CHECK(reason == NULL);
  LH_CHECK(claims != NULL);
  if (!claims)
    return;
  LH_CHECK_STR(json_string_value(json_object_get(claims, "sub")), "user-1");
  LH_CHECK_INT(json_integer_value(json_object_get(claims, "tv")), 3);
  LH_CHECK(json_is_true(json_object_get(claims, "admin")));
  LH_CHECK_INT(json_integer_value(json_object_get(claims, "iat")), NOW);
  LH_CHECK_INT(json_integer_value(json_object_get(claims, "exp")), NOW + 1800);
  LH_CHECK(json_object_get(claims, "iss") == NULL);
  LH_CHECK(json_object_get(claims, "aud") == NULL);
  json_decref(claims);
}

static void test_sign_keeps_given_exp(void) {
  init_default();
  char token[LH_JWT_MAX_TOKEN + 1];
  json_t *claims = json_pack("{s:s, s:I}", "sub", "u", "exp", (json_int_t)(NOW + 5));
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, token, sizeof token), 0);
  /* The caller's object is not modified. */
  LH_CHECK(json_object_get(claims, "iat") == NULL);
  json_decref(claims);
  LH_CHECK_STR(verify_at(token, NOW), "ok");
  LH_CHECK_STR(verify_at(token, NOW + 5 + LH_JWT_LEEWAY), "expired");

  claims = json_pack("{s:s}", "exp", "tomorrow");
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, token, sizeof token), LH_EINVAL);
  json_decref(claims);
  claims = json_pack("[i]", 1);
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, token, sizeof token), LH_EINVAL);
  json_decref(claims);
}

static void test_sign_limits(void) {
  init_default();
  char small[64];
  json_t *claims = json_pack("{s:s}", "sub", "u");
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, small, sizeof small), LH_ELIMIT);
  json_decref(claims);
  char big[3500], token[LH_JWT_MAX_TOKEN + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  claims = json_pack("{s:s}", "blob", big);
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, token, sizeof token), LH_ELIMIT);
  json_decref(claims);
}

static void test_wrong_key(void) {
  init_default();
  char token[1024];
  make_token(hs256, "{\"sub\":\"u\",\"exp\":1700001000}", OTHER, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_signature");
  make_token(hs256, "{\"sub\":\"u\",\"exp\":1700001000}", SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "ok");
}

static void test_alg_none(void) {
  init_default();
  char token[1024];
  make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"sub\":\"u\",\"exp\":1700001000}", NULL,
             token, sizeof token);
  LH_CHECK(token[strlen(token) - 1] == '.');
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
  /* Also with a valid HS256 signature over a "none" header, and with lower-case or no alg. */
  make_token("{\"alg\":\"none\"}", "{\"exp\":1700001000}", SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
  make_token("{\"alg\":\"hs256\"}", "{\"exp\":1700001000}", SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
  make_token("{\"typ\":\"JWT\"}", "{\"exp\":1700001000}", SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
}

/* An HS512 token signed with the same secret, as libjwt 1.10 would make and accept, built by hand
 * (test_libjwt_reference builds the same with libjwt itself). */
static void test_hs512_rejected(void) {
  init_default();
  char h[128], p[256], s[128], token[1024];
  const char *header = "{\"alg\":\"HS512\",\"typ\":\"JWT\"}";
  const char *payload = "{\"sub\":\"u\",\"exp\":1700001000}";
  b64(header, strlen(header), h, sizeof h);
  b64(payload, strlen(payload), p, sizeof p);
  snprintf(token, sizeof token, "%s.%s", h, p);
  unsigned char mac[crypto_auth_hmacsha512_BYTES];
  crypto_auth_hmacsha512_state st;
  crypto_auth_hmacsha512_init(&st, (const unsigned char *)SECRET, strlen(SECRET));
  crypto_auth_hmacsha512_update(&st, (const unsigned char *)token, strlen(token));
  crypto_auth_hmacsha512_final(&st, mac);
  b64(mac, sizeof mac, s, sizeof s);
  size_t n = strlen(token);
  snprintf(token + n, sizeof token - n, ".%s", s);
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
  /* The same header with an HS256 signature is refused too: the header names the algorithm. */
  make_token(header, payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_alg");
}

/* libjwt as an independent reference: its HS256 tokens verify here and ours verify there, while
 * the tokens libjwt 1.10 would also accept (HS512 with the same secret, alg none) are refused. */
static jwt_t *reference_token(jwt_alg_t alg, const char *key) {
  jwt_t *j = NULL;
  if (jwt_new(&j) != 0)
    return NULL;
  jwt_add_grant(j, "sub", "u");
  jwt_add_grant_int(j, "exp", 1700001000);
  jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0);
  return j;
}

static void test_libjwt_reference(void) {
  init_default();
  jwt_alg_t algs[] = {JWT_ALG_HS256, JWT_ALG_HS512, JWT_ALG_HS384, JWT_ALG_NONE};
  const char *expect[] = {"ok", "bad_alg", "bad_alg", "bad_alg"};
  for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
    jwt_t *j = reference_token(algs[i], algs[i] == JWT_ALG_NONE ? NULL : SECRET);
    LH_CHECK(j != NULL);
    char *tok = j ? jwt_encode_str(j) : NULL;
    LH_CHECK(tok != NULL);
    if (tok)
      LH_CHECK_STR(verify_at(tok, NOW), expect[i]);
    free(tok);
    jwt_free(j);
  }
  /* A token signed by libjwt with another key is refused. */
  jwt_t *j = reference_token(JWT_ALG_HS256, OTHER);
  char *tok = jwt_encode_str(j);
  LH_CHECK_STR(verify_at(tok, NOW), "bad_signature");
  free(tok);
  jwt_free(j);
  /* Ours decode and verify with libjwt, pinned to HS256 with the same key. */
  json_t *claims = json_pack("{s:s}", "sub", "u");
  char ours[1024];
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, ours, sizeof ours), 0);
  json_decref(claims);
  jwt_t *decoded = NULL;
  LH_CHECK_INT(jwt_decode(&decoded, ours, (const unsigned char *)SECRET, (int)strlen(SECRET)), 0);
  LH_CHECK(decoded && jwt_get_alg(decoded) == JWT_ALG_HS256);
  if (decoded)
    LH_CHECK_STR(jwt_get_grant(decoded, "sub"), "u");
  jwt_free(decoded);
}

static void test_header_rules(void) {
  init_default();
  char token[1024];
  const char *payload = "{\"exp\":1700001000}";
  make_token("{\"alg\":\"HS256\"}", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "ok"); /* typ is optional */
  make_token("{\"alg\":\"HS256\",\"typ\":\"JWS\"}", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "malformed");
  make_token("{\"alg\":\"HS256\",\"typ\":1}", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "malformed");
  make_token("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "malformed");
  make_token("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "malformed"); /* duplicate key */
  make_token("[\"HS256\"]", payload, SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "malformed");
}

static void test_expiry(void) {
  init_default();
  char token[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, token, sizeof token);
  long long exp = NOW + 1800;
  LH_CHECK_STR(verify_at(token, exp - 1), "ok");
  LH_CHECK_STR(verify_at(token, exp), "ok");                     /* within leeway */
  LH_CHECK_STR(verify_at(token, exp + LH_JWT_LEEWAY - 1), "ok"); /* within leeway */
  LH_CHECK_STR(verify_at(token, exp + LH_JWT_LEEWAY), "expired");
  LH_CHECK_STR(verify_at(token, exp + 100000), "expired");
}

static void test_nbf(void) {
  init_default();
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"nbf\":1700000060}", NOW), "ok");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"nbf\":1700000061}", NOW), "not_yet_valid");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"nbf\":1700000500}", NOW), "not_yet_valid");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"nbf\":\"soon\"}", NOW), "bad_claims");
}

static void test_exp_required(void) {
  init_default();
  LH_CHECK_STR(verify_payload("{\"sub\":\"u\"}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":\"1700001000\"}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000.5}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":null}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iat\":\"x\"}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":9223372036854775807}", NOW), "ok");
  LH_CHECK_STR(verify_payload("{\"exp\":-9223372036854775807}", NOW), "expired");
  LH_CHECK_STR(verify_payload("[1700001000]", NOW), "malformed");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"exp\":1900000000}", NOW), "malformed");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000", NOW), "malformed");
}

static void test_tampered(void) {
  init_default();
  char token[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, token, sizeof token);
  char *payload = strchr(token, '.') + 1;
  /* Flip one payload character. */
  char saved = payload[5];
  payload[5] = saved == 'A' ? 'B' : 'A';
  LH_CHECK_STR(verify_at(token, NOW), "bad_signature");
  payload[5] = saved;
  LH_CHECK_STR(verify_at(token, NOW), "ok");
  /* Swap in a payload with other claims but keep the old signature. */
  char forged[LH_JWT_MAX_TOKEN + 1], other[1024];
  make_token(hs256, "{\"sub\":\"admin\",\"exp\":1700001000}", OTHER, other, sizeof other);
  const char *sig = strrchr(token, '.');
  snprintf(forged, sizeof forged, "%.*s%s", (int)(strrchr(other, '.') - other), other, sig);
  LH_CHECK_STR(verify_at(forged, NOW), "bad_signature");
  /* Flip a signature character. */
  char *s = strrchr(token, '.') + 1;
  s[3] = s[3] == 'A' ? 'B' : 'A';
  LH_CHECK_STR(verify_at(token, NOW), "bad_signature");
}

static void test_truncated_and_shape(void) {
  init_default();
  char token[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, token, sizeof token);
  size_t len = strlen(token);
  json_t *claims;
  const char *reason;
  LH_CHECK_INT(lh_jwt_verify(token, len - 1, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "bad_signature");
  LH_CHECK_INT(lh_jwt_verify(token, len - 43, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "bad_signature"); /* "header.payload." */
  LH_CHECK_INT(lh_jwt_verify(token, len - 44, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "malformed"); /* "header.payload" */
  LH_CHECK_INT(lh_jwt_verify(token, 20, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "malformed");
  LH_CHECK_INT(lh_jwt_verify(token, 0, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "malformed");
  LH_CHECK(claims == NULL);

  char extra[LH_JWT_MAX_TOKEN + 8];
  snprintf(extra, sizeof extra, "%s.", token);
  LH_CHECK_STR(verify_at(extra, NOW), "malformed"); /* four parts */
  snprintf(extra, sizeof extra, "%s=", token);
  LH_CHECK_STR(verify_at(extra, NOW), "bad_signature"); /* padding is not base64url */
  LH_CHECK_STR(verify_at("..", NOW), "malformed");
  LH_CHECK_STR(verify_at("a.b.c", NOW), "malformed");
  LH_CHECK_STR(verify_at("not a token", NOW), "malformed");
  /* A NUL inside the token. */
  memcpy(extra, token, len + 1);
  extra[10] = '\0';
  LH_CHECK_INT(lh_jwt_verify(extra, len, NOW, &claims, &reason), LH_EINVAL);
  LH_CHECK_STR(reason, "malformed");
}

static void test_oversized(void) {
  init_default();
  /* A correctly signed 5000-byte token is still refused. */
  char *payload = malloc(4000), *token = malloc(8192);
  if (!payload || !token) {
    free(payload);
    free(token);
    LH_CHECK(0);
    return;
  }
  int n = snprintf(payload, 4000, "{\"exp\":1700001000,\"pad\":\"");
  memset(payload + n, 'x', 3700 - (size_t)n);
  strcpy(payload + 3700, "\"}");
  make_token(hs256, payload, SECRET, token, 8192);
  LH_CHECK(strlen(token) >= 5000);
  LH_CHECK_STR(verify_at(token, NOW), "malformed");
  free(payload);
  free(token);
}

static void test_previous_secret(void) {
  lh_config_t cfg;
  config_init(&cfg);
  snprintf(cfg.jwt_previous_secret, sizeof cfg.jwt_previous_secret, "%s", PREVIOUS);
  LH_CHECK_INT(init_with(&cfg), 0);
  char token[1024];
  make_token(hs256, "{\"exp\":1700001000}", PREVIOUS, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "ok");
  make_token(hs256, "{\"exp\":1700001000}", SECRET, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "ok");
  make_token(hs256, "{\"exp\":1700001000}", OTHER, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_signature");
  /* New tokens are signed with the current secret. */
  char signed_tok[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, signed_tok, sizeof signed_tok);
  config_init(&cfg); /* without the previous secret */
  LH_CHECK_INT(init_with(&cfg), 0);
  LH_CHECK_STR(verify_at(signed_tok, NOW), "ok");
  make_token(hs256, "{\"exp\":1700001000}", PREVIOUS, token, sizeof token);
  LH_CHECK_STR(verify_at(token, NOW), "bad_signature");
}

static void test_issuer_audience(void) {
  lh_config_t cfg;
  config_init(&cfg);
  snprintf(cfg.jwt_issuer, sizeof cfg.jwt_issuer, "luahost");
  snprintf(cfg.jwt_audience, sizeof cfg.jwt_audience, "users-api");
  LH_CHECK_INT(init_with(&cfg), 0);
  char token[LH_JWT_MAX_TOKEN + 1];
  json_t *claims = json_pack("{s:s, s:s}", "sub", "u", "iss", "evil");
  LH_CHECK_INT(lh_jwt_sign(claims, NOW, token, sizeof token), 0);
  json_decref(claims);
  json_t *out = NULL;
  const char *reason;
  LH_CHECK_INT(lh_jwt_verify(token, strlen(token), NOW, &out, &reason), 0);
  LH_CHECK_STR(json_string_value(json_object_get(out, "iss")), "luahost");
  LH_CHECK_STR(json_string_value(json_object_get(out, "aud")), "users-api");
  json_decref(out);

  const char *good = "{\"exp\":1700001000,\"iss\":\"luahost\",\"aud\":\"users-api\"}";
  LH_CHECK_STR(verify_payload(good, NOW), "ok");
  LH_CHECK_STR(
      verify_payload("{\"exp\":1700001000,\"iss\":\"luahost\",\"aud\":[\"x\",\"users-api\"]}", NOW),
      "ok");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iss\":\"other\",\"aud\":\"users-api\"}", NOW),
               "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"aud\":\"users-api\"}", NOW), "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iss\":\"luahost\",\"aud\":\"other\"}", NOW),
               "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iss\":\"luahost\",\"aud\":[\"other\"]}", NOW),
               "bad_claims");
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iss\":\"luahost\"}", NOW), "bad_claims");

  /* Without configured values, iss and aud are not checked. */
  init_default();
  LH_CHECK_STR(verify_payload("{\"exp\":1700001000,\"iss\":\"other\",\"aud\":\"x\"}", NOW), "ok");
}

static void test_init_errors(void) {
  lh_config_t cfg;
  char err[256] = "";
  config_init(&cfg);
  snprintf(cfg.jwt_secret, sizeof cfg.jwt_secret, "0123456789abcdef0123456789abcde"); /* 31 */
  LH_CHECK_INT(lh_jwt_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "LUAHOST_JWT_SECRET") != NULL);
  /* After a failed init nothing verifies. */
  LH_CHECK_STR(verify_at("a.b.c", NOW), "internal");

  config_init(&cfg);
  cfg.jwt_secret[0] = '\0';
  LH_CHECK_INT(lh_jwt_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "LUAHOST_JWT_SECRET is required") != NULL);
  LH_CHECK(strstr(err, "LUAHOST_DEV=1") != NULL);

  config_init(&cfg);
  snprintf(cfg.jwt_previous_secret, sizeof cfg.jwt_previous_secret, "short");
  LH_CHECK_INT(lh_jwt_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "LUAHOST_JWT_PREVIOUS_SECRET") != NULL);

  config_init(&cfg);
  cfg.token_ttl = 0;
  LH_CHECK_INT(lh_jwt_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "token_ttl") != NULL);

  config_init(&cfg);
  snprintf(cfg.jwt_secret, sizeof cfg.jwt_secret, "0123456789abcdef0123456789abcdef"); /* 32 */
  LH_CHECK_INT(lh_jwt_init(&cfg, err, sizeof err), 0);
}

static void test_dev_secret(void) {
  lh_config_t cfg;
  config_init(&cfg);
  cfg.jwt_secret[0] = '\0';
  cfg.dev = 1;
  LH_CHECK_INT(init_with(&cfg), 0);
  char first[LH_JWT_MAX_TOKEN + 1], second[LH_JWT_MAX_TOKEN + 1];
  sign_simple(NOW, first, sizeof first);
  LH_CHECK_STR(verify_at(first, NOW), "ok");
  /* A restart generates another secret: the old token stops verifying. */
  LH_CHECK_INT(init_with(&cfg), 0);
  sign_simple(NOW, second, sizeof second);
  LH_CHECK(strcmp(first, second) != 0);
  LH_CHECK_STR(verify_at(first, NOW), "bad_signature");
  LH_CHECK_STR(verify_at(second, NOW), "ok");
}

static void test_timing(void) {
  init_default();
  enum { N = 20000 };
  char token[LH_JWT_MAX_TOKEN + 1];
  json_t *claims =
      json_pack("{s:s, s:s, s:i}", "sub", "65a1f0c2e4b0a1b2c3d4e5f6", "role", "admin", "tv", 7);
  unsigned long long t0 = lh_now_ns();
  for (int i = 0; i < N; i++)
    lh_jwt_sign(claims, NOW, token, sizeof token);
  double sign_us = (double)(lh_now_ns() - t0) / 1e3 / N;
  json_decref(claims);
  size_t len = strlen(token);
  int ok = 0;
  t0 = lh_now_ns();
  for (int i = 0; i < N; i++) {
    json_t *out;
    const char *reason;
    if (lh_jwt_verify(token, len, NOW, &out, &reason) == 0) {
      ok++;
      json_decref(out);
    }
  }
  double verify_us = (double)(lh_now_ns() - t0) / 1e3 / N;
  LH_CHECK_INT(ok, N);
  printf("     sign %.2f us, verify %.2f us (%zu-byte token, %d runs)\n", sign_us, verify_us, len,
         (int)N);
}

int main(void) {
  if (sodium_init() < 0)
    return 1;
  LH_RUN(test_round_trip);
  LH_RUN(test_sign_keeps_given_exp);
  LH_RUN(test_sign_limits);
  LH_RUN(test_wrong_key);
  LH_RUN(test_alg_none);
  LH_RUN(test_hs512_rejected);
  LH_RUN(test_libjwt_reference);
  LH_RUN(test_header_rules);
  LH_RUN(test_expiry);
  LH_RUN(test_nbf);
  LH_RUN(test_exp_required);
  LH_RUN(test_tampered);
  LH_RUN(test_truncated_and_shape);
  LH_RUN(test_oversized);
  LH_RUN(test_previous_secret);
  LH_RUN(test_issuer_audience);
  LH_RUN(test_init_errors);
  LH_RUN(test_dev_secret);
  LH_RUN(test_timing);
  lh_jwt_cleanup();
  return lh_test_done();
}
