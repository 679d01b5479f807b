/* jwt.h: HS256 JSON Web Tokens for luahost: the process-wide signing secrets, a synchronous,
 * thread-safe C core (sign and verify on jansson objects), and the `luahost.jwt` Lua module.
 *
 * Only HS256 is produced or accepted. Verification parses the header itself and pins the
 * algorithm before any signature work (libjwt 1.10 accepts HS512 and `none`), checks the HMAC in
 * constant time against the current and then the previous secret, and requires an integer `exp`.
 * Time checks allow LH_JWT_LEEWAY seconds of clock skew between hosts. */
#ifndef LH_JWT_H
#define LH_JWT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include <lua.h>
#include "config.h"

#define LH_JWT_MAX_TOKEN 4096 /* longer tokens are rejected as malformed */
#define LH_JWT_MIN_SECRET 32  /* bytes */
#define LH_JWT_LEEWAY 60      /* seconds of clock skew tolerated for exp and nbf */

/* Stores the secrets, issuer, audience and token lifetime from cfg. The secret is cfg->jwt_secret
 * taken as raw bytes (at least 32); when it is empty and cfg->dev is set, 32 random bytes are
 * generated and a warning is logged. Returns 0, or LH_EINVAL with a message in err. Call once at
 * start-up before other threads use this module. */
int lh_jwt_init(const lh_config_t *cfg, char *err, size_t errlen);
/* Wipes the secrets; sign and verify fail afterwards until the next init. */
/* A reload's configuration: apply == 0 only checks that its secrets are usable; apply == 1 makes
 * them (and token_ttl) the ones used from now on (reload.h). 0 or LH_EINVAL with a message. */
int lh_jwt_reload(const lh_config_t *cfg, int apply, char *err, size_t errlen);
void lh_jwt_cleanup(void);

/* Signs claims (a JSON object; borrowed, not modified) at time now (Unix seconds). Adds `iat` =
 * now, `exp` = now + token_ttl unless claims has an integer exp, and `iss`/`aud` when configured
 * (they replace any given). Writes the NUL-terminated token to out. Returns 0, LH_EINVAL (claims
 * not an object, a non-integer exp, not initialised), LH_ELIMIT (out too small or the token would
 * exceed LH_JWT_MAX_TOKEN), or LH_ENOMEM. */
int lh_jwt_sign(const json_t *claims, int64_t now, char *out, size_t outlen);

/* Verifies token (len bytes) at time now. On success stores the claims object in *claims (a new
 * reference: json_decref it) and returns 0. On failure returns LH_EINVAL with *reason set to one of
 * the stable codes "malformed", "bad_alg", "bad_signature", "expired", "not_yet_valid",
 * "bad_claims"; before a successful lh_jwt_init it returns LH_EINVAL with *reason = "internal".
 * Parsing allocates only through jansson: an allocation failure reads as "malformed". */
int lh_jwt_verify(const char *token, size_t len, int64_t now, json_t **claims, const char **reason);

/* Module table for `require "luahost.jwt"`: sign(claims) and verify(token). */
int luaopen_luahost_jwt(lua_State *L);

#endif
