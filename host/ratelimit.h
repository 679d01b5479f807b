/* ratelimit.h: a process-wide store of fixed-window counters shared by every worker (login
 * brute-force defence). Thread-safe; bounded in size: when full, expired entries are swept, and if
 * none expired the oldest window is dropped (the store favours availability over perfect memory).
 */
#ifndef LH_RATELIMIT_H
#define LH_RATELIMIT_H

#include <lua.h>
#include <stddef.h>

#define LH_RATELIMIT_MAX_KEYS 100000
#define LH_RATELIMIT_MAX_KEY_LEN 256

/* Adds one to key's counter in a window of window_s seconds starting at its first hit.
 * Returns the new count and writes the seconds until the window ends to *retry_after. */
long lh_ratelimit_incr(const char *key, size_t len, unsigned window_s, unsigned *retry_after);
/* Current count (0 when absent or expired). */
long lh_ratelimit_count(const char *key, size_t len, unsigned *retry_after);
void lh_ratelimit_reset(const char *key, size_t len);
void lh_ratelimit_clear(void);

/* `require "luahost.ratelimit"`: incr(key, window_s), count(key), reset(key). */
int luaopen_luahost_ratelimit(lua_State *L);

#endif
