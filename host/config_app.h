/* config_app.h: the application's section of the configuration (config.h: app_json), shared by
 * config.c (which reads the file and the host's variables) and config_app.c (which owns what the
 * section may hold, the legacy names that land in it and LUAHOST_APP_<KEY>). */
#ifndef LH_CONFIG_APP_H
#define LH_CONFIG_APP_H

#include <lua.h>
#include <stddef.h>

/* Largest number of keys, at any depth, in the section (depth: LH_APP_MAX_DEPTH, config.h). */
#define LH_APP_MAX_KEYS 1024
/* Longest top-level key (it is also the tail of an environment variable's name). */
#define LH_APP_MAX_KEY 64

/* Checks that the table at idx is data (strings in valid UTF-8, finite numbers, booleans, tables
 * of them; top-level keys [a-z][a-z0-9_]*; within the bounds) and writes it as a JSON object
 * into json (jsonmax bytes, NUL included). 0, or LH_EINVAL with "<where>: <reason>" in err. */
int lh_config_app_store(lua_State *L, int idx, char *json, size_t jsonmax, const char *where,
                        char *err, size_t errlen);
/* Moves the legacy top-level keys (admin_username, login_window_s, ...) of the config file's
 * table at idx into its `app` table, logging a deprecation for each. LH_EINVAL when a key is
 * given both ways. */
int lh_config_app_legacy(lua_State *L, int idx, const char *path, char *err, size_t errlen);
/* Applies the legacy variables (LUAHOST_ADMIN_USERNAME, ...), then LUAHOST_APP_<KEY>, to the
 * section in json. 0 or LH_EINVAL with a message naming the variable. */
int lh_config_app_env(char *json, size_t jsonmax, char *err, size_t errlen);

/* The spelling of booleans in the environment: 1/true/yes/on and 0/false/no/off (any case).
 * 0 or LH_EINVAL. (config.c) */
int lh_config_parse_bool(const char *s, int *out);

#endif
