/* libFuzzer target: JWT verification (lua-bindings/jwt.c). Whatever the bytes, a token that was
 * not signed with a configured key never verifies: neither the raw input, nor a token built from
 * the input's claims and signed with another key. Tokens the host signs itself always verify. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jwt.h"

static const int64_t NOW = 1800000000;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_jwt: %s\n", what);
  abort();
}

static void init_with(const char *secret) {
  static lh_config_t cfg;
  char err[256];
  lh_config_defaults(&cfg);
  snprintf(cfg.jwt_secret, sizeof(cfg.jwt_secret), "%s", secret);
  if (lh_jwt_init(&cfg, err, sizeof(err)) != 0)
    fail(err);
}

static const char KEY[] = "fuzz-key-0123456789abcdef0123456789abcdef";
static const char OTHER[] = "other-key-0123456789abcdef0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    init_with(KEY);
    ready = 1;
  }
  json_t *claims = NULL;
  const char *reason = NULL;
  if (lh_jwt_verify((const char *)data, size, NOW, &claims, &reason) == 0)
    fail("random bytes verified as a token");

  /* The input as claims: signed with another key it must fail; with ours it must verify. */
  json_t *obj = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(obj)) {
    json_decref(obj);
    return 0;
  }
  json_object_del(obj, "exp");
  json_object_del(obj, "nbf");
  char token[LH_JWT_MAX_TOKEN + 1];
  init_with(OTHER);
  int signed_other = lh_jwt_sign(obj, NOW, token, sizeof(token));
  init_with(KEY);
  if (signed_other == 0 && lh_jwt_verify(token, strlen(token), NOW, &claims, &reason) == 0)
    fail("a token signed with another key verified");
  if (lh_jwt_sign(obj, NOW, token, sizeof(token)) == 0) {
    if (lh_jwt_verify(token, strlen(token), NOW, &claims, &reason) != 0)
      fail("a token the host signed does not verify");
    json_decref(claims);
  }
  json_decref(obj);
  return 0;
}
