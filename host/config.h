/* config.h: luahost's configuration: one struct, filled from built-in defaults, then the config
 * file (a Lua table, config/luahost.conf or $LUAHOST_CONFIG), then LUAHOST_<OPTION> environment
 * variables. It holds the host's concerns and each binding's own; the application's settings are
 * one JSON object (app_json) that the host only checks to be data. Every option is described once,
 * in the table in config.c, which also validates it; a bad value fails start-up with a message
 * naming the option and where it came from. */
#ifndef LH_CONFIG_H
#define LH_CONFIG_H

#include <stddef.h>

#define LH_MAX_LIST 16
/* The application's section as JSON text, NUL included. */
#define LH_APP_JSON_MAX 16384
/* Nesting allowed inside the application's section (the section itself is level 1). */
#define LH_APP_MAX_DEPTH 8

typedef struct lh_config_s {
  /* server */
  char listen[256]; /* host:port */
  int workers;      /* 0 = one per core */
  char log_level[16];
  int access_log;             /* 1 = a JSON line per request */
  char access_log_path[1024]; /* file of the access lines; "" = stderr (log.h) */
  char error_log_path[1024];  /* file of every other log line; "" = stderr */
  int dev;                    /* development mode (LUAHOST_DEV=1) */
  /* the operators' listener (reload.h, endpoints.h): "off" disables it */
  char admin_listen[256];
  char admin_token[512]; /* non-empty: the admin listener wants Authorization: Bearer <token> */
  int watch;             /* 1 = reload when the scripts directory changes */
  int public_metrics;    /* 1 = /metrics on the public listener too */
  /* HTTP limits and timeouts */
  int max_url_bytes;
  int max_header_bytes;
  int max_header_fields;
  int max_body_bytes;
  int max_body_values;        /* values in one decoded JSON or form body (json.h), 0 unbounded */
  int max_body_decoded_bytes; /* its estimated size in Lua (json.h), 0 unbounded */
  int header_timeout_ms;
  int body_timeout_ms;
  int idle_timeout_ms;
  int max_connections; /* per process */
  int max_requests_per_conn;
  int shutdown_grace_ms;
  int drain_delay_ms;
  /* Lua runtime */
  char scripts[1024]; /* scripts directory */
  int script_budget_ms;
  int jit;               /* 1 = JIT on for scripts (trusted scripts only) */
  int hook_interval;     /* VM instructions between budget checks */
  int script_memory_mb;  /* ceiling of one Lua state (memory.h) */
  int request_memory_mb; /* share of one request or hook of it */
  /* API description */
  int docs;               /* 1 = /docs serves Swagger UI (/openapi.json is always served) */
  char docs_assets[1024]; /* directory of the swagger-ui-dist files */
  /* job pools */
  int db_threads, db_queue;
  int hash_threads, hash_queue;
  /* database */
  char mongodb_uri[1024];
  char db[128];
  int db_timeout_ms; /* server selection, socket, wait queue; maxTimeMS on queries */
  /* passwords */
  char password_scheme[16]; /* argon2id | bcrypt */
  int argon2_t;
  int argon2_m_kib;
  int bcrypt_cost;
  /* JWT */
  char jwt_secret[512];
  char jwt_previous_secret[512];
  char jwt_issuer[256];
  char jwt_audience[256];
  int token_ttl; /* seconds */
  /* proxies and CORS */
  char trusted_proxies[LH_MAX_LIST][64];
  int n_trusted_proxies;
  char cors_origins[LH_MAX_LIST][256];
  int n_cors_origins;
  /* The application's own settings: the `app = { ... }` table of the config file, the legacy
   * LUAHOST_<NAME> variables listed in config.c and LUAHOST_APP_<KEY>, as a JSON object ("{}"
   * when absent). The host only checks that it is data; the scripts read it (luahost.config.app)
   * and give its keys their meaning, defaults and ranges. */
  char app_json[LH_APP_JSON_MAX];
  /* where each value came from, for messages */
  char source[1024];
} lh_config_t;

/* Fills cfg. On failure writes a message naming the option into err and returns LH_EINVAL. */
int lh_config_load(lh_config_t *cfg, const char *path, char *err, size_t errlen);
/* The defaults only (tests). */
void lh_config_defaults(lh_config_t *cfg);
/* Outside development mode, refuses a jwt_secret shorter than 32 bytes (and a non-empty but short
 * jwt_previous_secret): 0 or LH_EINVAL with a message. Call at start-up, after lh_config_load. */
int lh_config_check_secrets(const lh_config_t *cfg, char *err, size_t errlen);
/* For hot reload: calls cb for every option whose value differs between old and cur, saying
 * whether that option may change without a restart. Returns 1 if any changed option needs a
 * restart, else 0. cb may be NULL. */
typedef void (*lh_config_change_cb)(const char *name, int reloadable, void *ud);
int lh_config_diff(const lh_config_t *old, const lh_config_t *cur, lh_config_change_cb cb,
                   void *ud);
/* For hot reload: every option that needs a restart and differs between cur and live gets its
 * live value back in cur, and cb is called with its name. Returns how many were kept. */
int lh_config_keep_fixed(lh_config_t *cur, const lh_config_t *live, lh_config_change_cb cb,
                         void *ud);
/* 1 if the option may change on reload, 0 if it needs a restart, LH_ENOTFOUND if unknown. */
int lh_config_is_reloadable(const char *name);

#endif
