/* password.h: password hashing and verification (argon2id through libsodium, bcrypt through
 * libcrypt), as a synchronous, thread-safe C core and the `luahost.password` Lua module on top.
 *
 * The C core never touches a lua_State, so pool threads and unit tests call it directly. The Lua
 * module runs every hash and verify on the "hash" pool through lh_sched_await, because one call
 * costs tens to hundreds of milliseconds. */
#ifndef LH_PASSWORD_H
#define LH_PASSWORD_H

#include <stddef.h>
#include <lua.h>
#include "config.h"

/* Large enough for any hash this module writes or accepts (libsodium's crypto_pwhash_STRBYTES is
 * 128, a bcrypt string is 60). */
#define LH_PASSWORD_HASH_MAX 128
/* bcrypt only looks at the first 72 bytes; longer passwords are refused when hashing with it. */
#define LH_PASSWORD_BCRYPT_MAX 72

typedef enum { LH_PASSWORD_ARGON2ID = 0, LH_PASSWORD_BCRYPT } lh_password_scheme_t;

typedef struct lh_password_params_s {
  lh_password_scheme_t scheme;
  unsigned argon2_t;     /* argon2id passes (opslimit) */
  unsigned argon2_m_kib; /* argon2id memory in KiB (memlimit / 1024) */
  unsigned bcrypt_cost;  /* bcrypt log2 rounds, 4..31 */
} lh_password_params_t;

/* Validates the hashing parameters of cfg, initialises libsodium, stores the parameters for the
 * whole process and makes the dummy hash. Call once at start-up, before any other thread uses this
 * module. Returns 0, or LH_EINVAL/LH_ENOMEM/LH_EIO with a message in err. */
int lh_password_init(const lh_config_t *cfg, char *err, size_t errlen);
/* Wipes the dummy hash. Safe to call when init failed or never ran. */
void lh_password_cleanup(void);

/* Checks a parameter set on its own (used by init and by tests). */
int lh_password_params_check(const lh_password_params_t *p, char *err, size_t errlen);
/* The parameters stored by lh_password_init. */
const lh_password_params_t *lh_password_params(void);
/* The dummy hash stored by lh_password_init ("" before it). */
const char *lh_password_dummy_hash(void);

/* Hashes pw (len bytes, no NUL allowed) with p (NULL: the configured parameters) into out as a
 * NUL-terminated string; outlen must be at least LH_PASSWORD_HASH_MAX. Returns 0, LH_EINVAL for a
 * NUL byte, a bcrypt password over 72 bytes, bad parameters or a short buffer, LH_ENOMEM, or
 * LH_EIO when the library fails. */
int lh_password_hash(const lh_password_params_t *p, const char *pw, size_t len, char *out,
                     size_t outlen);

/* Checks pw against a stored hash: 1 on a match, 0 on a mismatch, LH_EINVAL for a NUL byte in pw
 * or a malformed or unsupported hash, LH_ENOMEM. Accepts $argon2id$ and bcrypt $2b$, $2a$, $2y$.
 * Never refuses a password for its length. */
int lh_password_verify(const char *pw, size_t len, const char *hash);

/* 1 when hash was made with another scheme or other parameters than p (NULL: the configured
 * ones), 0 when it matches them, LH_EINVAL when hash is malformed or unsupported. */
int lh_password_needs_rehash(const lh_password_params_t *p, const char *hash);

/* Module table for `require "luahost.password"`: hash, verify, needs_rehash, verify_dummy. */
int luaopen_luahost_password(lua_State *L);

#endif
