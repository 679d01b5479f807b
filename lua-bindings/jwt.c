/* jwt.c: owns luahost's JSON Web Tokens: the signing secrets (kept only as precomputed HMAC-SHA256
 * key states), HS256 signing and verification on jansson objects, and the `luahost.jwt` module.
 *
 * Tokens are built and checked here with libsodium (HMAC-SHA256, constant-time comparison,
 * strict base64url) and jansson rather than libjwt, because libjwt 1.10 accepts other algorithms
 * and never checks time claims: owning the few lines of format handling is simpler than guarding
 * around it. Nothing here blocks: a verify costs microseconds and runs on the loop.
 *
 * Lua API (`local jwt = require "luahost.jwt"`), callable anywhere (it never yields):
 *   jwt.sign(claims)  -> token string. claims is a table with string keys and string, integer or
 *                        boolean values; anything else raises. iat, exp, iss and aud are set as
 *                        lh_jwt_sign describes.
 *   jwt.verify(token) -> claims table (strings, numbers, booleans) | nil, code with code one of
 *                        "malformed", "bad_alg", "bad_signature", "expired", "not_yet_valid",
 *                        "bad_claims", "internal". A non-string token raises. */
#include "jwt.h"

#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <sodium.h>

#include "lh.h"
#include "log.h"

#define LH_JWT_MAC_BYTES crypto_auth_hmacsha256_BYTES
#define LH_B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING

typedef struct lh_jwt_key_s {
  int set;
  /* The HMAC state after absorbing the key: each call copies it, so the raw secret is not kept
   * and the key schedule is not recomputed per token. */
  crypto_auth_hmacsha256_state state;
} lh_jwt_key_t;

/* The keys and the lifetime: what a reload may change (reload.h). Immutable once published;
 * lh_jwt_reload publishes a new set with one atomic store, and sets that were replaced stay
 * allocated until lh_jwt_cleanup (a worker may still be reading one), so they are only replaced
 * when something in them changed. */
typedef struct lh_jwt_keys_s {
  lh_jwt_key_t current, previous;
  int64_t ttl;
  unsigned char digest[32]; /* of the secrets and ttl they were made from */
  struct lh_jwt_keys_s *older;
} lh_jwt_keys_t;

static _Atomic(lh_jwt_keys_t *) g_keys;

static const lh_jwt_keys_t *keys(void) {
  return atomic_load_explicit(&g_keys, memory_order_acquire);
}

/* Written once by lh_jwt_init before worker threads exist, read-only afterwards. */
static struct {
  int ready;
  char issuer[256];
  char audience[256];
  char header[64]; /* base64url of the fixed header */
  size_t header_len;
} g_jwt;

/* ---- init ---------------------------------------------------------------------------------- */

static void key_set(lh_jwt_key_t *key, const unsigned char *secret, size_t len) {
  crypto_auth_hmacsha256_init(&key->state, secret, len);
  key->set = 1;
}

static int load_secret(lh_jwt_key_t *key, const char *secret, const char *name, char *err,
                       size_t errlen) {
  size_t len = strlen(secret);
  if (len < LH_JWT_MIN_SECRET) {
    snprintf(err, errlen, "%s must be at least %d bytes (got %zu)", name, LH_JWT_MIN_SECRET, len);
    return LH_EINVAL;
  }
  key_set(key, (const unsigned char *)secret, len);
  return 0;
}

static void keys_digest(const lh_config_t *cfg, unsigned char out[32]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 32);
  crypto_generichash_update(&st, (const unsigned char *)cfg->jwt_secret,
                            strlen(cfg->jwt_secret) + 1);
  crypto_generichash_update(&st, (const unsigned char *)cfg->jwt_previous_secret,
                            strlen(cfg->jwt_previous_secret) + 1);
  crypto_generichash_update(&st, (const unsigned char *)&cfg->token_ttl, sizeof(cfg->token_ttl));
  crypto_generichash_final(&st, out, 32);
}

/* Builds the keys of cfg into a new set (*out), or explains in err why they are unusable. */
static int keys_make(const lh_config_t *cfg, lh_jwt_keys_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (cfg->token_ttl <= 0) {
    snprintf(err, errlen, "token_ttl must be a positive number of seconds");
    return LH_EINVAL;
  }
  lh_jwt_keys_t *k = calloc(1, sizeof(*k));
  if (!k) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  int rc = 0;
  if (cfg->jwt_secret[0] != '\0') {
    rc = load_secret(&k->current, cfg->jwt_secret, "LUAHOST_JWT_SECRET", err, errlen);
  } else if (cfg->dev) {
    unsigned char secret[LH_JWT_MIN_SECRET];
    randombytes_buf(secret, sizeof secret);
    key_set(&k->current, secret, sizeof secret);
    sodium_memzero(secret, sizeof secret);
    lh_warn("LUAHOST_JWT_SECRET is not set: development mode generated a random JWT secret; "
            "tokens will not survive a restart and are not accepted by other hosts");
  } else {
    snprintf(err, errlen,
             "LUAHOST_JWT_SECRET is required (at least %d bytes); set LUAHOST_DEV=1 for a "
             "generated development secret",
             LH_JWT_MIN_SECRET);
    rc = LH_EINVAL;
  }
  if (rc == 0 && cfg->jwt_previous_secret[0] != '\0')
    rc = load_secret(&k->previous, cfg->jwt_previous_secret, "LUAHOST_JWT_PREVIOUS_SECRET", err,
                     errlen);
  if (rc < 0) {
    sodium_memzero(k, sizeof(*k));
    free(k);
    return rc;
  }
  k->ttl = cfg->token_ttl;
  keys_digest(cfg, k->digest);
  *out = k;
  return 0;
}

/* The keys a reload's check made, published by its apply: apply only swaps a pointer, so it cannot
 * fail (register.h). Only the reload thread calls lh_jwt_reload. */
static lh_jwt_keys_t *g_pending;

static void keys_free(lh_jwt_keys_t *k) {
  if (k) {
    sodium_memzero(k, sizeof(*k));
    free(k);
  }
}

int lh_jwt_reload(const lh_config_t *cfg, int apply, char *err, size_t errlen) {
  if (!apply) {
    keys_free(g_pending); /* an earlier candidate's, rejected after its check */
    g_pending = NULL;
    lh_jwt_keys_t *cur = atomic_load(&g_keys);
    unsigned char digest[32];
    keys_digest(cfg, digest);
    if (cur && memcmp(cur->digest, digest, sizeof digest) == 0)
      return 0; /* nothing changed (a development secret stays as it was generated) */
    return keys_make(cfg, &g_pending, err, errlen);
  }
  if (!g_pending)
    return 0;
  g_pending->older = atomic_load(&g_keys);
  atomic_store_explicit(&g_keys, g_pending, memory_order_release);
  g_pending = NULL;
  lh_info("JWT keys replaced on reload");
  return 0;
}

int lh_jwt_init(const lh_config_t *cfg, char *err, size_t errlen) {
  static const char header_json[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  lh_jwt_cleanup();
  if (sodium_init() < 0) {
    snprintf(err, errlen, "libsodium failed to initialise");
    return LH_EIO;
  }
  lh_jwt_keys_t *k;
  int rc = keys_make(cfg, &k, err, errlen);
  if (rc < 0)
    goto fail;
  atomic_store(&g_keys, k);
  snprintf(g_jwt.issuer, sizeof g_jwt.issuer, "%s", cfg->jwt_issuer);
  snprintf(g_jwt.audience, sizeof g_jwt.audience, "%s", cfg->jwt_audience);
  sodium_bin2base64(g_jwt.header, sizeof g_jwt.header, (const unsigned char *)header_json,
                    sizeof header_json - 1, LH_B64URL);
  g_jwt.header_len = strlen(g_jwt.header);
  g_jwt.ready = 1;
  return 0;
fail:
  lh_jwt_cleanup();
  return rc;
}

void lh_jwt_cleanup(void) {
  keys_free(g_pending);
  g_pending = NULL;
  lh_jwt_keys_t *k = atomic_exchange(&g_keys, NULL);
  while (k) {
    lh_jwt_keys_t *older = k->older;
    sodium_memzero(k, sizeof(*k));
    free(k);
    k = older;
  }
  sodium_memzero(&g_jwt, sizeof g_jwt);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static void mac_compute(const lh_jwt_key_t *key, const char *msg, size_t len,
                        unsigned char mac[LH_JWT_MAC_BYTES]) {
  crypto_auth_hmacsha256_state st = key->state;
  crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, len);
  crypto_auth_hmacsha256_final(&st, mac);
  sodium_memzero(&st, sizeof st);
}

/* Strict base64url without padding: every input byte must be consumed and libsodium refuses
 * non-zero trailing bits, so each byte string has exactly one accepted encoding. */
static int b64_decode(const char *src, size_t srclen, unsigned char *dst, size_t cap,
                      size_t *outlen) {
  const char *end = NULL;
  if (sodium_base642bin(dst, cap, src, srclen, NULL, outlen, &end, LH_B64URL) != 0)
    return LH_EINVAL;
  return end == src + srclen ? 0 : LH_EINVAL;
}

/* Appends the base64url encoding of bin at out + *pos, keeping room for the NUL. */
static int b64_append(char *out, size_t outlen, size_t *pos, const void *bin, size_t len) {
  size_t need = sodium_base64_ENCODED_LEN(len, LH_B64URL);
  if (outlen - *pos < need)
    return LH_ELIMIT;
  sodium_bin2base64(out + *pos, outlen - *pos, bin, len, LH_B64URL);
  *pos += need - 1;
  return 0;
}

static int set_int(json_t *obj, const char *key, int64_t v) {
  return json_object_set_new(obj, key, json_integer((json_int_t)v)) == 0 ? 0 : LH_ENOMEM;
}

static int set_str(json_t *obj, const char *key, const char *v) {
  return json_object_set_new(obj, key, json_string(v)) == 0 ? 0 : LH_ENOMEM;
}

/* Adds the registered claims this host controls to a copy of the caller's claims. */
static int add_registered_claims(json_t *payload, int64_t now) {
  json_t *exp = json_object_get(payload, "exp");
  if (exp && !json_is_integer(exp))
    return LH_EINVAL;
  int rc = set_int(payload, "iat", now);
  if (rc == 0 && !exp)
    rc = set_int(payload, "exp", now + keys()->ttl);
  if (rc == 0 && g_jwt.issuer[0])
    rc = set_str(payload, "iss", g_jwt.issuer);
  if (rc == 0 && g_jwt.audience[0])
    rc = set_str(payload, "aud", g_jwt.audience);
  return rc;
}

/* ---- sign ---------------------------------------------------------------------------------- */

int lh_jwt_sign(const json_t *claims, int64_t now, char *out, size_t outlen) {
  if (!g_jwt.ready || !json_is_object(claims))
    return LH_EINVAL;
  /* A shallow copy is enough: only top-level keys are added, and jansson's API is not
   * const-qualified although json_copy does not modify its argument. */
  json_t *payload = json_copy((json_t *)claims);
  if (!payload)
    return LH_ENOMEM;
  int rc = add_registered_claims(payload, now);
  char json[LH_JWT_MAX_TOKEN];
  size_t n = 0;
  if (rc == 0) {
    n = json_dumpb(payload, json, sizeof json, JSON_COMPACT);
    if (n == 0)
      rc = LH_ENOMEM;
    else if (n > sizeof json)
      rc = LH_ELIMIT;
  }
  json_decref(payload);
  if (rc < 0)
    return rc;

  size_t pos = g_jwt.header_len;
  if (outlen < pos + 2)
    return LH_ELIMIT;
  memcpy(out, g_jwt.header, pos);
  out[pos++] = '.';
  rc = b64_append(out, outlen, &pos, json, n);
  if (rc < 0 || outlen - pos < 2)
    return LH_ELIMIT;
  unsigned char mac[LH_JWT_MAC_BYTES];
  mac_compute(&keys()->current, out, pos, mac);
  out[pos++] = '.';
  rc = b64_append(out, outlen, &pos, mac, sizeof mac);
  if (rc < 0)
    return rc;
  return pos > LH_JWT_MAX_TOKEN ? LH_ELIMIT : 0;
}

/* ---- verify -------------------------------------------------------------------------------- */

/* Decodes one base64url JSON object part; NULL when it is not exactly that. */
static json_t *decode_object(const char *src, size_t len) {
  unsigned char buf[LH_JWT_MAX_TOKEN];
  size_t n;
  if (len == 0 || b64_decode(src, len, buf, sizeof buf, &n) < 0)
    return NULL;
  json_error_t jerr;
  json_t *obj = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
  if (obj && !json_is_object(obj)) {
    json_decref(obj);
    return NULL;
  }
  return obj;
}

/* The header must say HS256; a `typ` other than JWT or any `crit` extension is refused. */
static const char *check_header(const char *src, size_t len) {
  /* Fast path: the exact header this host writes needs no JSON parsing. */
  if (len == g_jwt.header_len && memcmp(src, g_jwt.header, len) == 0)
    return NULL;
  json_t *h = decode_object(src, len);
  if (!h)
    return "malformed";
  const char *reason = NULL;
  json_t *alg = json_object_get(h, "alg");
  json_t *typ = json_object_get(h, "typ");
  if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
    reason = "bad_alg";
  else if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
    reason = "malformed";
  else if (json_object_get(h, "crit"))
    reason = "malformed";
  json_decref(h);
  return reason;
}

/* signed_part is "header.payload"; sig the base64url signature. */
static const char *check_signature(const char *signed_part, size_t signed_len, const char *sig,
                                   size_t sig_len) {
  unsigned char given[LH_JWT_MAC_BYTES + 1], mac[LH_JWT_MAC_BYTES];
  size_t n;
  if (b64_decode(sig, sig_len, given, sizeof given, &n) < 0 || n != LH_JWT_MAC_BYTES)
    return "bad_signature";
  const lh_jwt_keys_t *k = keys();
  mac_compute(&k->current, signed_part, signed_len, mac);
  if (crypto_verify_32(mac, given) == 0)
    return NULL;
  if (k->previous.set) {
    mac_compute(&k->previous, signed_part, signed_len, mac);
    if (crypto_verify_32(mac, given) == 0)
      return NULL;
  }
  return "bad_signature";
}

static int aud_matches(const json_t *aud) {
  if (json_is_string(aud))
    return strcmp(json_string_value(aud), g_jwt.audience) == 0;
  if (json_is_array(aud)) {
    for (size_t i = 0; i < json_array_size(aud); i++) {
      const json_t *v = json_array_get(aud, i);
      if (json_is_string(v) && strcmp(json_string_value(v), g_jwt.audience) == 0)
        return 1;
    }
  }
  return 0;
}

static const char *check_claims(const json_t *claims, int64_t now) {
  const json_t *exp = json_object_get(claims, "exp");
  const json_t *nbf = json_object_get(claims, "nbf");
  const json_t *iat = json_object_get(claims, "iat");
  if (!json_is_integer(exp) || (nbf && !json_is_integer(nbf)) || (iat && !json_is_integer(iat)))
    return "bad_claims";
  /* Written as now - leeway >= exp so a huge exp cannot overflow. */
  if (now - LH_JWT_LEEWAY >= (int64_t)json_integer_value(exp))
    return "expired";
  if (nbf && now + LH_JWT_LEEWAY < (int64_t)json_integer_value(nbf))
    return "not_yet_valid";
  if (g_jwt.issuer[0]) {
    const json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), g_jwt.issuer) != 0)
      return "bad_claims";
  }
  if (g_jwt.audience[0] && !aud_matches(json_object_get(claims, "aud")))
    return "bad_claims";
  return NULL;
}

int lh_jwt_verify(const char *token, size_t len, int64_t now, json_t **claims,
                  const char **reason) {
  *claims = NULL;
  *reason = "internal";
  if (!g_jwt.ready)
    return LH_EINVAL;
  *reason = "malformed";
  if (len == 0 || len > LH_JWT_MAX_TOKEN)
    return LH_EINVAL;
  const char *d1 = memchr(token, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
    return LH_EINVAL;
  const char *payload = d1 + 1, *sig = d2 + 1;
  size_t payload_len = (size_t)(d2 - payload), sig_len = len - (size_t)(sig - token);

  /* Header first, so the algorithm is pinned before any signature work; the payload is parsed
   * only once the signature proved that this host wrote it. */
  const char *why = check_header(token, (size_t)(d1 - token));
  if (!why)
    why = check_signature(token, (size_t)(d2 - token), sig, sig_len);
  if (why) {
    *reason = why;
    return LH_EINVAL;
  }
  json_t *obj = decode_object(payload, payload_len);
  if (!obj)
    return LH_EINVAL; /* "malformed" */
  why = check_claims(obj, now);
  if (why) {
    json_decref(obj);
    *reason = why;
    return LH_EINVAL;
  }
  *reason = NULL;
  *claims = obj;
  return 0;
}

/* ---- Lua module ---------------------------------------------------------------------------- */

/* Converts the value on top of L to a new JSON value, or writes why not into err. */
static json_t *claim_from_lua(lua_State *L, char *err, size_t errlen) {
  const char *key = lua_tostring(L, -2);
  switch (lua_type(L, -1)) {
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    json_t *v = json_stringn(s, len);
    if (!v)
      snprintf(err, errlen, "claim '%s' must be valid UTF-8 without NUL bytes", key);
    return v;
  }
  case LUA_TNUMBER: {
    lua_Number n = lua_tonumber(L, -1);
    if (n != floor(n) || fabs(n) > (lua_Number)LH_MAX_SAFE_INT) {
      snprintf(err, errlen, "claim '%s' must be an integer", key);
      return NULL;
    }
    return json_integer((json_int_t)n);
  }
  case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, -1));
  default:
    snprintf(err, errlen, "claim '%s' must be a string, an integer or a boolean", key);
    return NULL;
  }
}

/* Builds a JSON object from the table at idx. Never raises, so nothing leaks: on failure the
 * object is released and err says why. */
static json_t *claims_from_lua(lua_State *L, int idx, char *err, size_t errlen) {
  json_t *obj = json_object();
  if (!obj) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t klen;
    if (lua_type(L, -2) != LUA_TSTRING || strlen(lua_tolstring(L, -2, &klen)) != klen) {
      snprintf(err, errlen, "claim names must be strings without NUL bytes");
      lua_pop(L, 2);
      goto fail;
    }
    json_t *v = claim_from_lua(L, err, errlen);
    if (!v || json_object_set_new(obj, lua_tostring(L, -2), v) != 0) {
      if (v)
        snprintf(err, errlen, "claim name '%s' is not valid", lua_tostring(L, -2));
      lua_pop(L, 2);
      goto fail;
    }
    lua_pop(L, 1);
  }
  return obj;
fail:
  json_decref(obj);
  return NULL;
}

static int ljwt_sign(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  char err[192];
  json_t *claims = claims_from_lua(L, 1, err, sizeof err);
  if (!claims)
    return luaL_argerror(L, 1, err);
  char token[LH_JWT_MAX_TOKEN + 1];
  int rc = lh_jwt_sign(claims, (int64_t)time(NULL), token, sizeof token);
  json_decref(claims);
  if (rc == LH_EINVAL)
    return luaL_argerror(L, 1, g_jwt.ready ? "exp must be an integer" : "jwt is not initialised");
  if (rc == LH_ELIMIT)
    return luaL_argerror(L, 1, "claims too large for a token");
  if (rc < 0)
    return luaL_error(L, "jwt.sign: %s", lh_strerror(rc));
  lua_pushstring(L, token);
  return 1;
}

static void push_claims(lua_State *L, json_t *claims) {
  const char *key;
  json_t *v;
  lua_createtable(L, 0, (int)json_object_size(claims));
  json_object_foreach(claims, key, v) {
    switch (json_typeof(v)) {
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushnumber(L, (lua_Number)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE:
    case JSON_FALSE: lua_pushboolean(L, json_is_true(v)); break;
    default:
      /* sign never produces nested values or null, so a token carrying them was made elsewhere
       * with our secret; such claims are left out rather than guessed at. */
      continue;
    }
    lua_setfield(L, -2, key);
  }
}

static int ljwt_verify(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_argerror(L, 1, "string expected");
  size_t len;
  const char *token = lua_tolstring(L, 1, &len);
  json_t *claims;
  const char *reason;
  if (lh_jwt_verify(token, len, (int64_t)time(NULL), &claims, &reason) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, reason);
    return 2;
  }
  push_claims(L, claims);
  json_decref(claims);
  return 1;
}

int luaopen_luahost_jwt(lua_State *L) {
  static const luaL_Reg funcs[] = {{"sign", ljwt_sign}, {"verify", ljwt_verify}, {NULL, NULL}};
  lua_createtable(L, 0, (int)LH_ARRAY_SIZE(funcs) - 1);
  luaL_register(L, NULL, funcs);
  return 1;
}
