/* password.c: owns password hashing for luahost: the process-wide hashing parameters, the dummy
 * hash used for unknown users, the synchronous C core (argon2id via libsodium, bcrypt via
 * libcrypt) and the `luahost.password` Lua module, which runs the slow calls on the "hash" pool.
 *
 * Lua API (`local password = require "luahost.password"`), callable from a request's coroutine:
 *   password.hash(pw)            -> hash string | nil, "bad_value" | nil, "overloaded" | ...
 *   password.verify(pw, hash)    -> true | false | nil, "bad_value" | nil, "bad_hash" | ...
 *   password.verify_dummy(pw)    -> false after the same work as verify (for unknown users)
 *   password.needs_rehash(hash)  -> boolean | nil, "bad_hash"   (no yield; callable anywhere)
 * A non-string argument raises. Other error codes: "overloaded" (hash queue full), "unavailable"
 * (shutting down), "internal" (out of memory or a library failure). */
#include "password.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <sodium.h>

#include "lh.h"
#include "scheduler.h"

/* A sanity cap on argon2id memory per hash (4 GiB): every concurrent hash needs this much. */
#define LH_ARGON2_M_KIB_CAP (4u * 1024u * 1024u)
#define LH_BCRYPT_COST_MIN 4u
#define LH_BCRYPT_COST_MAX 31u
/* A bcrypt string: "$2b$" + two cost digits + "$" + 22 salt and 31 hash characters. */
#define LH_BCRYPT_LEN 60
#define LH_BCRYPT_SALT_BYTES 16

static const char argon2id_prefix[] = "$argon2id$";

/* Written once by lh_password_init before worker threads exist, read-only afterwards. */
static lh_password_params_t g_params = {LH_PASSWORD_ARGON2ID, 2, 19456, 12};
static char g_dummy[LH_PASSWORD_HASH_MAX];

/* ---- helpers -------------------------------------------------------------------------------- */

static int has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int is_bcrypt_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '/';
}

/* Parses a bcrypt string's shape and cost without hashing anything. Returns the cost, or
 * LH_EINVAL when the string is not a well-formed $2a$/$2b$/$2y$ hash. */
static int bcrypt_parse(const char *hash, char *variant) {
  if (strlen(hash) != LH_BCRYPT_LEN || hash[0] != '$' || hash[1] != '2' || hash[3] != '$' ||
      hash[6] != '$')
    return LH_EINVAL;
  if (hash[2] != 'a' && hash[2] != 'b' && hash[2] != 'y')
    return LH_EINVAL;
  if (hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9')
    return LH_EINVAL;
  int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
  if (cost < (int)LH_BCRYPT_COST_MIN || cost > (int)LH_BCRYPT_COST_MAX)
    return LH_EINVAL;
  for (int i = 7; i < LH_BCRYPT_LEN; i++) {
    if (!is_bcrypt_char(hash[i]))
      return LH_EINVAL;
  }
  if (variant)
    *variant = hash[2];
  return cost;
}

static int is_bcrypt(const char *hash) {
  return has_prefix(hash, "$2a$") || has_prefix(hash, "$2b$") || has_prefix(hash, "$2y$");
}

/* libcrypt needs a NUL-terminated phrase: copy it to the heap so it can be wiped afterwards. */
static char *phrase_dup(const char *pw, size_t len) {
  char *s = malloc(len + 1);
  if (!s)
    return NULL;
  memcpy(s, pw, len);
  s[len] = '\0';
  return s;
}

static void phrase_free(char *s, size_t len) {
  if (!s)
    return;
  sodium_memzero(s, len + 1);
  free(s);
}

/* Runs crypt_rn with a heap-allocated crypt_data (about 32 KiB, too big for a pool thread's
 * stack budget) and copies the result to out. Returns 0, LH_EINVAL when libcrypt refuses the
 * setting, or LH_ENOMEM. */
static int bcrypt_run(const char *pw, size_t len, const char *setting, char *out, size_t outlen) {
  struct crypt_data *data = calloc(1, sizeof *data);
  char *phrase = phrase_dup(pw, len);
  int rc = 0;
  if (!data || !phrase) {
    rc = LH_ENOMEM;
    goto done;
  }
  const char *res = crypt_rn(phrase, setting, data, (int)sizeof *data);
  /* libcrypt signals failure with NULL or with a string starting with '*'. */
  if (!res || res[0] == '*' || strlen(res) >= outlen) {
    rc = LH_EINVAL;
    goto done;
  }
  memcpy(out, res, strlen(res) + 1);
done:
  if (data) {
    sodium_memzero(data, sizeof *data);
    free(data);
  }
  phrase_free(phrase, len);
  return rc;
}

/* ---- parameters and init ----------------------------------------------------------------- */

int lh_password_params_check(const lh_password_params_t *p, char *err, size_t errlen) {
  if (p->scheme != LH_PASSWORD_ARGON2ID && p->scheme != LH_PASSWORD_BCRYPT) {
    snprintf(err, errlen, "password_scheme must be argon2id or bcrypt");
    return LH_EINVAL;
  }
  if (p->argon2_t < crypto_pwhash_argon2id_OPSLIMIT_MIN) {
    snprintf(err, errlen, "argon2_t must be at least %u", crypto_pwhash_argon2id_OPSLIMIT_MIN);
    return LH_EINVAL;
  }
  unsigned long long mem = (unsigned long long)p->argon2_m_kib * 1024ull;
  if (mem < crypto_pwhash_argon2id_MEMLIMIT_MIN || p->argon2_m_kib > LH_ARGON2_M_KIB_CAP ||
      mem > crypto_pwhash_argon2id_MEMLIMIT_MAX) {
    snprintf(err, errlen, "argon2_m_kib must be between %u and %u",
             crypto_pwhash_argon2id_MEMLIMIT_MIN / 1024u, LH_ARGON2_M_KIB_CAP);
    return LH_EINVAL;
  }
  if (p->bcrypt_cost < LH_BCRYPT_COST_MIN || p->bcrypt_cost > LH_BCRYPT_COST_MAX) {
    snprintf(err, errlen, "bcrypt_cost must be between %u and %u", LH_BCRYPT_COST_MIN,
             LH_BCRYPT_COST_MAX);
    return LH_EINVAL;
  }
  return 0;
}

static int params_from_config(const lh_config_t *cfg, lh_password_params_t *p, char *err,
                              size_t errlen) {
  if (strcmp(cfg->password_scheme, "argon2id") == 0) {
    p->scheme = LH_PASSWORD_ARGON2ID;
  } else if (strcmp(cfg->password_scheme, "bcrypt") == 0) {
    p->scheme = LH_PASSWORD_BCRYPT;
  } else {
    snprintf(err, errlen, "password_scheme must be argon2id or bcrypt, not \"%s\"",
             cfg->password_scheme);
    return LH_EINVAL;
  }
  if (cfg->argon2_t < 0 || cfg->argon2_m_kib < 0 || cfg->bcrypt_cost < 0) {
    snprintf(err, errlen, "hashing parameters must not be negative");
    return LH_EINVAL;
  }
  p->argon2_t = (unsigned)cfg->argon2_t;
  p->argon2_m_kib = (unsigned)cfg->argon2_m_kib;
  p->bcrypt_cost = (unsigned)cfg->bcrypt_cost;
  return lh_password_params_check(p, err, errlen);
}

int lh_password_init(const lh_config_t *cfg, char *err, size_t errlen) {
  lh_password_params_t p;
  if (sodium_init() < 0) {
    snprintf(err, errlen, "libsodium failed to initialise");
    return LH_EIO;
  }
  int rc = params_from_config(cfg, &p, err, errlen);
  if (rc < 0)
    return rc;
  /* The dummy hash is of a random password nobody knows, made with the live parameters, so
   * verifying against it costs exactly what a real verify costs. */
  unsigned char secret[32];
  char phrase[2 * sizeof secret + 1];
  randombytes_buf(secret, sizeof secret);
  sodium_bin2hex(phrase, sizeof phrase, secret, sizeof secret);
  char dummy[LH_PASSWORD_HASH_MAX];
  rc = lh_password_hash(&p, phrase, strlen(phrase), dummy, sizeof dummy);
  sodium_memzero(secret, sizeof secret);
  sodium_memzero(phrase, sizeof phrase);
  if (rc < 0) {
    snprintf(err, errlen, "making the dummy password hash failed: %s", lh_strerror(rc));
    return rc;
  }
  g_params = p;
  memcpy(g_dummy, dummy, sizeof g_dummy);
  return 0;
}

void lh_password_cleanup(void) {
  sodium_memzero(g_dummy, sizeof g_dummy);
}

const lh_password_params_t *lh_password_params(void) {
  return &g_params;
}

const char *lh_password_dummy_hash(void) {
  return g_dummy;
}

/* ---- the C core ---------------------------------------------------------------------------- */

static int hash_argon2id(const lh_password_params_t *p, const char *pw, size_t len, char *out) {
  int r = crypto_pwhash_str_alg(out, pw, len, p->argon2_t, (size_t)p->argon2_m_kib * 1024u,
                                crypto_pwhash_ALG_ARGON2ID13);
  if (r != 0)
    return errno == ENOMEM ? LH_ENOMEM : LH_EIO;
  return 0;
}

static int hash_bcrypt(const lh_password_params_t *p, const char *pw, size_t len, char *out,
                       size_t outlen) {
  if (len > LH_PASSWORD_BCRYPT_MAX)
    return LH_EINVAL;
  char rbytes[LH_BCRYPT_SALT_BYTES];
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  randombytes_buf(rbytes, sizeof rbytes);
  const char *s =
      crypt_gensalt_rn("$2b$", p->bcrypt_cost, rbytes, (int)sizeof rbytes, setting, sizeof setting);
  if (!s)
    return LH_EIO;
  int rc = bcrypt_run(pw, len, setting, out, outlen);
  return rc == LH_EINVAL ? LH_EIO : rc;
}

int lh_password_hash(const lh_password_params_t *p, const char *pw, size_t len, char *out,
                     size_t outlen) {
  char err[128];
  if (!p)
    p = &g_params;
  if (outlen < LH_PASSWORD_HASH_MAX || lh_password_params_check(p, err, sizeof err) < 0)
    return LH_EINVAL;
  if (memchr(pw, '\0', len))
    return LH_EINVAL;
  out[0] = '\0';
  if (p->scheme == LH_PASSWORD_ARGON2ID)
    return hash_argon2id(p, pw, len, out);
  return hash_bcrypt(p, pw, len, out, outlen);
}

/* Checks that hash is a complete, well-formed argon2id string. needs_rehash decodes every field
 * (parameters, salt and digest) and answers -1 for anything it cannot decode. */
static int argon2id_valid(const char *hash) {
  if (!has_prefix(hash, argon2id_prefix) || strlen(hash) >= crypto_pwhash_STRBYTES)
    return 0;
  return crypto_pwhash_argon2id_str_needs_rehash(hash, crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                                 crypto_pwhash_argon2id_MEMLIMIT_MIN) >= 0;
}

static int verify_bcrypt(const char *pw, size_t len, const char *hash) {
  char out[CRYPT_OUTPUT_SIZE];
  int rc = bcrypt_run(pw, len, hash, out, sizeof out);
  if (rc < 0)
    return rc;
  /* Compare the whole output in constant time: its length is fixed once the shape was checked. */
  int match = strlen(out) == LH_BCRYPT_LEN && sodium_memcmp(out, hash, LH_BCRYPT_LEN) == 0;
  sodium_memzero(out, sizeof out);
  return match;
}

int lh_password_verify(const char *pw, size_t len, const char *hash) {
  if (memchr(pw, '\0', len))
    return LH_EINVAL;
  if (has_prefix(hash, argon2id_prefix)) {
    if (!argon2id_valid(hash))
      return LH_EINVAL;
    /* The string was validated above, so -1 here means a mismatch (or, rarely, an allocation
     * failure, which also must not log anybody in). */
    return crypto_pwhash_str_verify(hash, pw, len) == 0 ? 1 : 0;
  }
  if (is_bcrypt(hash)) {
    if (bcrypt_parse(hash, NULL) < 0)
      return LH_EINVAL;
    return verify_bcrypt(pw, len, hash);
  }
  return LH_EINVAL;
}

int lh_password_needs_rehash(const lh_password_params_t *p, const char *hash) {
  if (!p)
    p = &g_params;
  if (has_prefix(hash, argon2id_prefix)) {
    if (!argon2id_valid(hash))
      return LH_EINVAL;
    if (p->scheme != LH_PASSWORD_ARGON2ID)
      return 1;
    int r =
        crypto_pwhash_argon2id_str_needs_rehash(hash, p->argon2_t, (size_t)p->argon2_m_kib * 1024u);
    return r < 0 ? LH_EINVAL : r;
  }
  if (is_bcrypt(hash)) {
    char variant;
    int cost = bcrypt_parse(hash, &variant);
    if (cost < 0)
      return LH_EINVAL;
    if (p->scheme != LH_PASSWORD_BCRYPT)
      return 1;
    /* $2a$ and $2y$ hashes are moved to the canonical $2b$ prefix as well. */
    return variant != 'b' || (unsigned)cost != p->bcrypt_cost;
  }
  return LH_EINVAL;
}

/* ---- Lua module -------------------------------------------------------------------------- */

typedef enum { LH_PW_HASH, LH_PW_VERIFY, LH_PW_DUMMY } lh_pw_op_t;

typedef struct lh_pw_job_s {
  lh_ljob_t lj;
  lh_pw_op_t op;
  int rc;
  char *pw; /* a private copy, wiped before it is freed */
  size_t len;
  char hash[LH_PASSWORD_HASH_MAX]; /* the stored hash for verify; the result of hash */
} lh_pw_job_t;

static void pw_job_work(lh_job_t *job) {
  lh_pw_job_t *j = LH_CONTAINER_OF(job, lh_pw_job_t, lj.job);
  switch (j->op) {
  case LH_PW_HASH: j->rc = lh_password_hash(NULL, j->pw, j->len, j->hash, sizeof j->hash); break;
  case LH_PW_VERIFY: j->rc = lh_password_verify(j->pw, j->len, j->hash); break;
  case LH_PW_DUMMY: j->rc = lh_password_verify(j->pw, j->len, g_dummy); break;
  }
}

static int push_nil_err(lua_State *L, const char *code) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  return 2;
}

static int pw_job_push(lh_ljob_t *lj, lua_State *co) {
  lh_pw_job_t *j = LH_CONTAINER_OF(lj, lh_pw_job_t, lj);
  if (lj->job.cancelled)
    return push_nil_err(co, "unavailable");
  if (j->rc == LH_ENOMEM || j->rc == LH_EIO)
    return push_nil_err(co, "internal");
  switch (j->op) {
  case LH_PW_HASH:
    if (j->rc < 0)
      return push_nil_err(co, "bad_value");
    lua_pushstring(co, j->hash);
    return 1;
  case LH_PW_VERIFY:
    if (j->rc < 0)
      return push_nil_err(co, "bad_hash");
    lua_pushboolean(co, j->rc == 1);
    return 1;
  case LH_PW_DUMMY: lua_pushboolean(co, 0); return 1;
  }
  return push_nil_err(co, "internal");
}

static void pw_job_free(lh_ljob_t *lj) {
  lh_pw_job_t *j = LH_CONTAINER_OF(lj, lh_pw_job_t, lj);
  if (j->pw) {
    sodium_memzero(j->pw, j->len);
    free(j->pw);
  }
  sodium_memzero(j->hash, sizeof j->hash);
  free(j);
}

/* Strings only: Lua would silently turn a number into a password otherwise. */
static const char *check_string(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_argerror(L, idx, "string expected");
  return lua_tolstring(L, idx, len);
}

/* Allocates the job and its password copy, or raises a memory error. */
static lh_pw_job_t *pw_job_new(lua_State *L, lh_pw_op_t op, const char *pw, size_t len) {
  lh_pw_job_t *j = calloc(1, sizeof *j);
  char *copy = malloc(len ? len : 1);
  if (!j || !copy) {
    free(j);
    free(copy);
    luaL_error(L, "out of memory");
    return NULL;
  }
  memcpy(copy, pw, len);
  j->op = op;
  j->pw = copy;
  j->len = len;
  j->lj.job.work = pw_job_work;
  j->lj.push = pw_job_push;
  j->lj.free = pw_job_free;
  return j;
}

static int lpw_hash(lua_State *L) {
  size_t len;
  const char *pw = check_string(L, 1, &len);
  /* Refuse on the loop what the pool would refuse anyway, without spending a queue slot. */
  if (memchr(pw, '\0', len) ||
      (g_params.scheme == LH_PASSWORD_BCRYPT && len > LH_PASSWORD_BCRYPT_MAX))
    return push_nil_err(L, "bad_value");
  lh_pw_job_t *j = pw_job_new(L, LH_PW_HASH, pw, len);
  return lh_sched_await(L, "hash", &j->lj);
}

static int lpw_verify(lua_State *L) {
  size_t len, hlen;
  const char *pw = check_string(L, 1, &len);
  const char *hash = check_string(L, 2, &hlen);
  if (memchr(pw, '\0', len))
    return push_nil_err(L, "bad_value");
  if (hlen >= LH_PASSWORD_HASH_MAX || memchr(hash, '\0', hlen) ||
      (!has_prefix(hash, argon2id_prefix) && !is_bcrypt(hash)))
    return push_nil_err(L, "bad_hash");
  lh_pw_job_t *j = pw_job_new(L, LH_PW_VERIFY, pw, len);
  memcpy(j->hash, hash, hlen + 1);
  return lh_sched_await(L, "hash", &j->lj);
}

static int lpw_verify_dummy(lua_State *L) {
  size_t len;
  const char *pw = check_string(L, 1, &len);
  if (memchr(pw, '\0', len))
    return push_nil_err(L, "bad_value");
  lh_pw_job_t *j = pw_job_new(L, LH_PW_DUMMY, pw, len);
  return lh_sched_await(L, "hash", &j->lj);
}

static int lpw_needs_rehash(lua_State *L) {
  size_t hlen;
  const char *hash = check_string(L, 1, &hlen);
  if (memchr(hash, '\0', hlen))
    return push_nil_err(L, "bad_hash");
  int r = lh_password_needs_rehash(NULL, hash);
  if (r < 0)
    return push_nil_err(L, "bad_hash");
  lua_pushboolean(L, r);
  return 1;
}

int luaopen_luahost_password(lua_State *L) {
  static const luaL_Reg funcs[] = {{"hash", lpw_hash},
                                   {"verify", lpw_verify},
                                   {"verify_dummy", lpw_verify_dummy},
                                   {"needs_rehash", lpw_needs_rehash},
                                   {NULL, NULL}};
  lua_createtable(L, 0, (int)LH_ARRAY_SIZE(funcs) - 1);
  luaL_register(L, NULL, funcs);
  return 1;
}
