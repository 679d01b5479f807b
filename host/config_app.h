/* config_app.h: the application's section of the configuration (config.h: app_json), shared by
 * config.c (which reads the file and the host's variables) and config_app.c (which owns what the
 * section may hold and how the file's stray top-level settings and the environment land in it).
 * The host gives no key a meaning. */
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
/* Moves the top-level keys of the config file's table at idx that name no host option and hold a
 * string, number or boolean into its `app` table, logging a deprecation for each (application
 * settings written where host options go, as they were before the section existed). LH_EINVAL
 * when a key is given both ways. */
int lh_config_app_adopt(lua_State *L, int idx, const char *path, char *err, size_t errlen);
/* Applies every LUAHOST_<NAME> whose name is no host option (as app.<name>), then
 * LUAHOST_APP_<KEY>, to the section in json. A value takes the type the file gave that key (a
 * string when it gave none). 0 or LH_EINVAL with a message naming the variable. */
int lh_config_app_env(char *json, size_t jsonmax, char *err, size_t errlen);

/* 1 when name is one of the host's options (config.c). */
int lh_config_is_option(const char *name, size_t len);
/* The host option within two edits of name (a likely typo), or NULL (config.c). */
const char *lh_config_near_option(const char *name, size_t len);

/* The spelling of booleans in the environment: 1/true/yes/on and 0/false/no/off (any case).
 * 0 or LH_EINVAL. (config.c) */
int lh_config_parse_bool(const char *s, int *out);

#endif
