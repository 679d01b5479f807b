/* config.c: luahost's configuration, as declared in config.h. One static table describes every
 * option (name, type, limits, default, one line of documentation, whether a reload may change it)
 * and where it lives in lh_config_t. Loading applies, in order: the defaults from that table, the
 * config file (a Lua chunk returning a table, run in an empty and JIT-less Lua state under an
 * instruction limit), and LUAHOST_<OPTION> environment variables. Every value is validated as it is
 * applied, so an error names the option and the source it came from. */
#include "config.h"
#include "config_app.h"
#include "lh.h"
#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <luajit.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LH_CONFIG_DEFAULT_PATH "config/luahost.conf"
/* A config file is a table literal; a billion instructions would be a bug, a million is plenty. */
#define LH_CONFIG_MAX_INSTRUCTIONS 10000000
#define LH_CONFIG_HOOK_STEP 1000

typedef enum {
  LH_OPT_INT,
  LH_OPT_BOOL,
  LH_OPT_STR,
  LH_OPT_ENUM,
  LH_OPT_LIST,
  LH_OPT_APP /* the application's section: a table of data, kept as JSON */
} lh_opt_type_t;

typedef int (*lh_opt_check_cb)(const char *value, char *why, size_t whylen);

typedef struct {
  const char *name;
  lh_opt_type_t type;
  size_t off;       /* offset of the field in lh_config_t */
  size_t size;      /* string: buffer size; list: size of one item */
  size_t count_off; /* list: offset of the item count */
  long long min, max;
  long long def_int;         /* int and bool */
  const char *def_str;       /* string and enum */
  const char *const *values; /* enum: allowed values, NULL-terminated */
  lh_opt_check_cb check;     /* string and list items: extra validation */
  const char *doc;
  int reloadable;
} lh_opt_t;

#define LH_FIELD_SIZE(f) sizeof(((lh_config_t *)0)->f)
#define LH_ITEM_SIZE(f) sizeof(((lh_config_t *)0)->f[0])

/* One table row per option type. Designated initializers keep every row self-explaining. */
// clang-format off
#define OPT_INT(n, lo, hi, d, rl, dc)                                                              \
  {.name = #n, .type = LH_OPT_INT, .off = offsetof(lh_config_t, n), .min = lo, .max = hi,          \
   .def_int = d, .doc = dc, .reloadable = rl}
#define OPT_BOOL(n, d, rl, dc)                                                                     \
  {.name = #n, .type = LH_OPT_BOOL, .off = offsetof(lh_config_t, n), .min = 0, .max = 1,           \
   .def_int = d, .doc = dc, .reloadable = rl}
#define OPT_STR(n, d, chk, rl, dc)                                                                 \
  {.name = #n, .type = LH_OPT_STR, .off = offsetof(lh_config_t, n), .size = LH_FIELD_SIZE(n),      \
   .def_str = d, .check = chk, .doc = dc, .reloadable = rl}
#define OPT_ENUM(n, d, vals, rl, dc)                                                               \
  {.name = #n, .type = LH_OPT_ENUM, .off = offsetof(lh_config_t, n), .size = LH_FIELD_SIZE(n),     \
   .def_str = d, .values = vals, .doc = dc, .reloadable = rl}
#define OPT_LIST(n, cnt, chk, rl, dc)                                                              \
  {.name = #n, .type = LH_OPT_LIST, .off = offsetof(lh_config_t, n), .size = LH_ITEM_SIZE(n),      \
   .count_off = offsetof(lh_config_t, cnt), .check = chk, .doc = dc, .reloadable = rl}
#define OPT_APP(n, rl, dc)                                                                         \
  {.name = #n, .type = LH_OPT_APP, .off = offsetof(lh_config_t, app_json),                         \
   .size = LH_FIELD_SIZE(app_json), .def_str = "{}", .doc = dc, .reloadable = rl}
// clang-format on

static int lh_check_listen(const char *value, char *why, size_t whylen);
static int lh_check_ip(const char *value, char *why, size_t whylen);
static int lh_check_admin_listen(const char *value, char *why, size_t whylen);
static int lh_check_origin(const char *value, char *why, size_t whylen);

static const char *const lh_log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const lh_password_schemes[] = {"argon2id", "bcrypt", NULL};

/* Reloadable options may change on a hot reload; any other change needs a restart. */
static const lh_opt_t lh_options[] = {
    /* server */
    OPT_STR(listen, "127.0.0.1:8000", lh_check_listen, 0,
            "address to listen on, IPv4:port or [IPv6]:port"),
    OPT_INT(workers, 0, 256, 0, 0, "worker threads; 0 = one per CPU core"),
    OPT_ENUM(log_level, "info", lh_log_levels, 1,
             "least severe level logged: debug, info, warn, error"),
    OPT_BOOL(access_log, 1, 1, "write one JSON line per request"),
    OPT_STR(access_log_path, "", NULL, 0,
            "file the access lines are appended to, reopened on SIGUSR1; empty: stderr"),
    OPT_STR(error_log_path, "", NULL, 0,
            "file every other log line is appended to, reopened on SIGUSR1; empty: stderr"),
    OPT_BOOL(dev, 0, 0, "development mode: allows a missing or weak JWT secret"),
    /* operators */
    OPT_STR(admin_listen, "127.0.0.1:9180", lh_check_admin_listen, 0,
            "the admin listener (health, metrics, reload), host:port or off"),
    OPT_STR(admin_token, "", NULL, 1,
            "if set, the admin listener requires Authorization: Bearer <token>"),
    OPT_BOOL(watch, 1, 0, "reload the scripts when a file under the scripts directory changes"),
    OPT_BOOL(public_metrics, 0, 1, "also serve /metrics on the public listener"),
    /* HTTP limits and timeouts */
    OPT_INT(max_url_bytes, 64, 1048576, 8192, 1, "longest request target (414 beyond)"),
    OPT_INT(max_header_bytes, 1024, 1048576, 16384, 1, "largest header block (431 beyond)"),
    OPT_INT(max_header_fields, 1, 10000, 100, 1, "most header fields in a request (431 beyond)"),
    OPT_INT(max_body_bytes, 0, 67108864, 65536, 1, "largest request body (413 beyond)"),
    OPT_INT(max_body_values, 0, 100000000, 10000, 0,
            "most values one decoded JSON or form body may hold (0: no bound)"),
    OPT_INT(max_body_decoded_bytes, 0, 2000000000, 262144, 0,
            "largest estimated size of one decoded JSON or form body (0: no bound)"),
    OPT_INT(header_timeout_ms, 100, 600000, 10000, 1, "time to receive the request head"),
    OPT_INT(body_timeout_ms, 100, 600000, 10000, 1, "time to receive the request body"),
    OPT_INT(idle_timeout_ms, 100, 3600000, 10000, 1, "keep-alive idle time before closing"),
    OPT_INT(max_connections, 1, 1000000, 10000, 0, "open connections per process"),
    OPT_INT(max_requests_per_conn, 1, 1000000, 1000, 1, "requests served on one connection"),
    OPT_INT(shutdown_grace_ms, 0, 600000, 10000, 1, "time in-flight requests get at shutdown"),
    OPT_INT(drain_delay_ms, 0, 600000, 0, 1, "time to report not-ready before closing listeners"),
    /* Lua runtime */
    OPT_STR(scripts, "scripts", NULL, 0, "directory of routes/, policies/ and lib/"),
    OPT_INT(script_budget_ms, 1, 600000, 1000, 1, "CPU time one request's script may use"),
    OPT_BOOL(jit, 0, 0, "run scripts with the JIT on (trusted scripts only: no time budget)"),
    OPT_INT(hook_interval, 100, 10000000, 10000, 1, "VM instructions between budget checks"),
    OPT_INT(script_memory_mb, 16, 65536, 1024, 0, "memory ceiling of one worker's Lua state"),
    OPT_INT(request_memory_mb, 1, 65536, 128, 1, "memory one request's script may allocate"),
    /* API description */
    OPT_BOOL(docs, 1, 0, "serve Swagger UI on /docs (/openapi.json is served either way)"),
    OPT_STR(docs_assets, ".tools/swagger-ui-dist", NULL, 0,
            "directory of the swagger-ui-dist files /docs serves (read once at start)"),
    /* job pools */
    OPT_INT(db_threads, 1, 256, 8, 0, "threads of the database pool"),
    OPT_INT(db_queue, 1, 1000000, 256, 0, "database jobs that may wait (503 beyond)"),
    OPT_INT(hash_threads, 1, 256, 2, 0, "threads of the password hashing pool"),
    OPT_INT(hash_queue, 1, 1000000, 64, 0, "hashing jobs that may wait (503 beyond)"),
    /* database */
    OPT_STR(mongodb_uri, "mongodb://127.0.0.1:27017", NULL, 0, "MongoDB connection string"),
    OPT_STR(db, "mydatabase", NULL, 0, "database name"),
    OPT_INT(db_timeout_ms, 100, 600000, 5000, 0, "server selection, socket and query time limit"),
    /* passwords */
    OPT_ENUM(password_scheme, "argon2id", lh_password_schemes, 0,
             "scheme of new hashes: argon2id or bcrypt"),
    OPT_INT(argon2_t, 1, 16, 2, 0, "argon2id passes (time cost)"),
    OPT_INT(argon2_m_kib, 8, 4194304, 19456, 0, "argon2id memory in KiB"),
    OPT_INT(bcrypt_cost, 4, 31, 12, 0, "bcrypt cost (log2 of rounds)"),
    /* JWT */
    OPT_STR(jwt_secret, "", NULL, 1, "HS256 signing key, at least 32 bytes outside dev mode"),
    OPT_STR(jwt_previous_secret, "", NULL, 1,
            "old key still accepted for verification during rotation"),
    OPT_STR(jwt_issuer, "", NULL, 0, "iss claim to set and require; empty = none"),
    OPT_STR(jwt_audience, "", NULL, 0, "aud claim to set and require; empty = none"),
    OPT_INT(token_ttl, 1, 31536000, 1800, 1, "token lifetime in seconds"),
    /* proxies and CORS */
    OPT_LIST(trusted_proxies, n_trusted_proxies, lh_check_ip, 1,
             "proxy addresses whose X-Forwarded-For is believed"),
    OPT_LIST(cors_origins, n_cors_origins, lh_check_origin, 1,
             "origins allowed by CORS; \"*\" = any"),
    /* the application: reloadable, since a new script generation reads it afresh */
    OPT_APP(app, 1, "the application's settings, read by the scripts as luahost.config.app"),
};

/* ---- small helpers ----------------------------------------------------------------------- */

static const lh_opt_t *lh_opt_find(const char *name, size_t len) {
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    if (strlen(lh_options[i].name) == len && memcmp(lh_options[i].name, name, len) == 0)
      return &lh_options[i];
  }
  return NULL;
}

static int *lh_opt_int(lh_config_t *cfg, const lh_opt_t *o) {
  return (int *)((char *)cfg + o->off);
}

static char *lh_opt_str(lh_config_t *cfg, const lh_opt_t *o) {
  return (char *)cfg + o->off;
}

static int *lh_opt_count(lh_config_t *cfg, const lh_opt_t *o) {
  return (int *)((char *)cfg + o->count_off);
}

/* Describes the expected value, for messages: "an integer between 0 and 256". */
static void lh_opt_expect(const lh_opt_t *o, char *out, size_t outlen) {
  switch (o->type) {
  case LH_OPT_INT: snprintf(out, outlen, "an integer between %lld and %lld", o->min, o->max); break;
  case LH_OPT_BOOL: snprintf(out, outlen, "a boolean (true/false, 1/0, yes/no, on/off)"); break;
  case LH_OPT_STR: snprintf(out, outlen, "a string of at most %zu bytes", o->size - 1); break;
  case LH_OPT_ENUM: {
    size_t pos = (size_t)snprintf(out, outlen, "one of");
    for (size_t i = 0; o->values[i] && pos < outlen; i++)
      pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", i ? ", " : " ", o->values[i]);
    break;
  }
  case LH_OPT_LIST: snprintf(out, outlen, "a list of at most %d strings", LH_MAX_LIST); break;
  case LH_OPT_APP:
    snprintf(out, outlen,
             "a table of strings, numbers, booleans and tables (at most %d levels, %d keys, "
             "%d bytes as JSON)",
             LH_APP_MAX_DEPTH, LH_APP_MAX_KEYS, LH_APP_JSON_MAX - 1);
    break;
  }
}

/* Writes "<where>: must be <expected>, got <got>". */
static int lh_bad_value(const lh_opt_t *o, const char *where, const char *got, char *err,
                        size_t errlen) {
  char expect[160];
  lh_opt_expect(o, expect, sizeof expect);
  lh_errf(err, errlen, "%s: must be %s, got %s", where, expect, got);
  return LH_EINVAL;
}

/* Quotes a user-supplied value for a message, shortened so that a message stays readable. */
static void lh_quote(const char *s, size_t len, char *out, size_t outlen) {
  if (len > 64)
    snprintf(out, outlen, "'%.64s...'", s);
  else
    snprintf(out, outlen, "'%.*s'", (int)len, s);
}

/* Options whose values are secrets (or carry credentials: a MongoDB URI may hold a password):
 * messages never show them, as a reload's error goes to the log and the reload status. */
static int lh_opt_secret(const lh_opt_t *o) {
  static const char *const secret[] = {"jwt_secret", "jwt_previous_secret", "admin_token",
                                       "mongodb_uri"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(secret); i++)
    if (strcmp(o->name, secret[i]) == 0)
      return 1;
  return 0;
}

/* An option's value for a message: quoted, or only its length for a secret. */
static void lh_quote_opt(const lh_opt_t *o, const char *s, size_t len, char *out, size_t outlen) {
  if (lh_opt_secret(o))
    snprintf(out, outlen, "a value of %zu bytes (not shown: a secret)", len);
  else
    lh_quote(s, len, out, outlen);
}

/* ---- validators -------------------------------------------------------------------------- */

static int lh_parse_port(const char *s, char *why, size_t whylen) {
  if (!*s) {
    lh_errf(why, whylen, "a port is missing");
    return LH_EINVAL;
  }
  long port = 0;
  for (const char *p = s; *p; p++) {
    if (!isdigit((unsigned char)*p) || p - s >= 5) {
      lh_errf(why, whylen, "the port must be a number between 1 and 65535");
      return LH_EINVAL;
    }
    port = port * 10 + (*p - '0');
  }
  if (port < 1 || port > 65535) {
    lh_errf(why, whylen, "the port must be a number between 1 and 65535");
    return LH_EINVAL;
  }
  return 0;
}

static int lh_check_listen(const char *value, char *why, size_t whylen) {
  char host[64];
  const char *port;
  if (value[0] == '[') {
    const char *close = strchr(value, ']');
    if (!close || close[1] != ':' || (size_t)(close - value - 1) >= sizeof host) {
      lh_errf(why, whylen, "expected [IPv6]:port");
      return LH_EINVAL;
    }
    memcpy(host, value + 1, (size_t)(close - value - 1));
    host[close - value - 1] = '\0';
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) != 1) {
      lh_errf(why, whylen, "'%s' is not an IPv6 address", host);
      return LH_EINVAL;
    }
    port = close + 2;
  } else {
    const char *colon = strrchr(value, ':');
    if (!colon || (size_t)(colon - value) >= sizeof host) {
      lh_errf(why, whylen, "expected host:port with an IPv4 address or [IPv6]");
      return LH_EINVAL;
    }
    memcpy(host, value, (size_t)(colon - value));
    host[colon - value] = '\0';
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) != 1) {
      lh_errf(why, whylen, "'%s' is not an IPv4 address (write IPv6 as [addr]:port)", host);
      return LH_EINVAL;
    }
    port = colon + 1;
  }
  return lh_parse_port(port, why, whylen);
}

static int lh_check_admin_listen(const char *value, char *why, size_t whylen) {
  return strcmp(value, "off") == 0 ? 0 : lh_check_listen(value, why, whylen);
}

static int lh_check_ip(const char *value, char *why, size_t whylen) {
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, value, addr) == 1 || inet_pton(AF_INET6, value, addr) == 1)
    return 0;
  lh_errf(why, whylen, "'%s' is not an IP address", value);
  return LH_EINVAL;
}

/* An origin is "*" or scheme://host[:port] with no path, as browsers send it. */
static int lh_check_origin(const char *value, char *why, size_t whylen) {
  if (strcmp(value, "*") == 0)
    return 0;
  const char *rest = NULL;
  if (strncmp(value, "http://", 7) == 0)
    rest = value + 7;
  else if (strncmp(value, "https://", 8) == 0)
    rest = value + 8;
  if (!rest || !*rest || strchr(rest, '/') || strpbrk(value, " \t\r\n,")) {
    lh_errf(why, whylen, "'%s' is not an origin like https://example.com[:port]", value);
    return LH_EINVAL;
  }
  return 0;
}

/* ---- setting values ---------------------------------------------------------------------- */

static int lh_set_int(lh_config_t *cfg, const lh_opt_t *o, long long v, const char *where,
                      const char *got, char *err, size_t errlen) {
  if (v < o->min || v > o->max)
    return lh_bad_value(o, where, got, err, errlen);
  *lh_opt_int(cfg, o) = (int)v;
  return 0;
}

/* Sets a string or enum option from len bytes at s (not necessarily NUL-terminated). */
/* Runs the option's own check (an address, an origin, ...) on a value; 0, or LH_EINVAL with the
 * check's reason after `where`. */
static int lh_opt_check(const lh_opt_t *o, const char *value, const char *where, char *err,
                        size_t errlen) {
  char why[160];
  if (o->check && o->check(value, why, sizeof why) < 0) {
    lh_errf(err, errlen, "%s: %s", where, why);
    return LH_EINVAL;
  }
  return 0;
}

static int lh_set_str(lh_config_t *cfg, const lh_opt_t *o, const char *s, size_t len,
                      const char *where, char *err, size_t errlen) {
  char got[96];
  lh_quote_opt(o, s, len, got, sizeof got);
  if (memchr(s, '\0', len))
    return lh_bad_value(o, where, "a string containing a NUL byte", err, errlen);
  if (o->type == LH_OPT_ENUM) {
    for (size_t i = 0; o->values[i]; i++) {
      if (strlen(o->values[i]) == len && memcmp(o->values[i], s, len) == 0) {
        snprintf(lh_opt_str(cfg, o), o->size, "%s", o->values[i]);
        return 0;
      }
    }
    return lh_bad_value(o, where, got, err, errlen);
  }
  if (len >= o->size)
    return lh_bad_value(o, where, got, err, errlen);
  char tmp[1024];
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  if (lh_opt_check(o, tmp, where, err, errlen) != 0)
    return LH_EINVAL;
  memcpy(lh_opt_str(cfg, o), tmp, len + 1);
  return 0;
}

/* Appends one item to a list option. */
static int lh_list_add(lh_config_t *cfg, const lh_opt_t *o, const char *s, size_t len,
                       const char *where, char *err, size_t errlen) {
  int *count = lh_opt_count(cfg, o);
  if (*count >= LH_MAX_LIST) {
    lh_errf(err, errlen, "%s: at most %d items", where, LH_MAX_LIST);
    return LH_EINVAL;
  }
  char got[96];
  lh_quote(s, len, got, sizeof got);
  if (len == 0 || len >= o->size || memchr(s, '\0', len)) {
    lh_errf(err, errlen, "%s: items must be non-empty strings of at most %zu bytes, got %s", where,
            o->size - 1, got);
    return LH_EINVAL;
  }
  char tmp[256];
  memcpy(tmp, s, len);
  tmp[len] = '\0';
  if (lh_opt_check(o, tmp, where, err, errlen) != 0)
    return LH_EINVAL;
  memcpy(lh_opt_str(cfg, o) + (size_t)*count * o->size, tmp, len + 1);
  (*count)++;
  return 0;
}

void lh_config_defaults(lh_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    const lh_opt_t *o = &lh_options[i];
    switch (o->type) {
    case LH_OPT_INT:
    case LH_OPT_BOOL: *lh_opt_int(cfg, o) = (int)o->def_int; break;
    case LH_OPT_STR:
    case LH_OPT_ENUM:
    case LH_OPT_APP: snprintf(lh_opt_str(cfg, o), o->size, "%s", o->def_str); break;
    case LH_OPT_LIST:
      *lh_opt_count(cfg, o) = 0; /* every list defaults to empty */
      break;
    }
  }
  snprintf(cfg->source, sizeof cfg->source, "defaults");
}

/* ---- the config file --------------------------------------------------------------------- */

/* Counts down the instruction budget that lh_config_file keeps in the registry; raising an error
 * from a count hook unwinds the chunk, so an endless loop ends with a message instead of a hang. */
static void lh_config_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_getfield(L, LUA_REGISTRYINDEX, "lh_config_budget");
  int *budget = (int *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (budget && --*budget <= 0)
    luaL_error(L, "took too long (more than %d instructions): an endless loop?",
               LH_CONFIG_MAX_INSTRUCTIONS);
}

/* Describes a Lua value for a message: numbers and strings are shown, other types named. */
static void lh_lua_got(lua_State *L, int idx, char *out, size_t outlen) {
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER) {
    snprintf(out, outlen, "%.17g", lua_tonumber(L, idx));
  } else if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    char q[96];
    lh_quote(s, len, q, sizeof q);
    snprintf(out, outlen, "string %s", q);
  } else if (t == LUA_TBOOLEAN) {
    snprintf(out, outlen, "%s", lua_toboolean(L, idx) ? "true" : "false");
  } else {
    snprintf(out, outlen, "a %s", lua_typename(L, t));
  }
}

static int lh_file_list(lua_State *L, lh_config_t *cfg, const lh_opt_t *o, const char *where,
                        char *err, size_t errlen) {
  if (lua_type(L, -1) != LUA_TTABLE) {
    char got[128];
    lh_lua_got(L, -1, got, sizeof got);
    return lh_bad_value(o, where, got, err, errlen);
  }
  *lh_opt_count(cfg, o) = 0;
  size_t n = lua_objlen(L, -1);
  /* Only the array part 1..n is read: any other key means the value is not a list. */
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    lua_Number k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (k < 1 || k > (lua_Number)n || k != floor(k)) {
      lua_pop(L, 1);
      return lh_bad_value(o, where, "a table with non-list keys", err, errlen);
    }
  }
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    if (lua_type(L, -1) != LUA_TSTRING) {
      char got[128], item[160];
      lh_lua_got(L, -1, got, sizeof got);
      snprintf(item, sizeof item, "item %zu %s", i, got);
      lua_pop(L, 1);
      return lh_bad_value(o, where, item, err, errlen);
    }
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    int rc = lh_list_add(cfg, o, s, len, where, err, errlen);
    lua_pop(L, 1);
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* The application's section: checked and kept as JSON by config_app.c. */
static int lh_file_app(lua_State *L, lh_config_t *cfg, const lh_opt_t *o, const char *where,
                       char *err, size_t errlen) {
  if (lua_type(L, -1) != LUA_TTABLE) {
    char got[128];
    lh_lua_got(L, -1, got, sizeof got);
    return lh_bad_value(o, where, got, err, errlen);
  }
  return lh_config_app_store(L, lua_gettop(L), lh_opt_str(cfg, o), o->size, where, err, errlen);
}

/* Applies the value on top of the stack to option o. */
static int lh_file_value(lua_State *L, lh_config_t *cfg, const lh_opt_t *o, const char *where,
                         char *err, size_t errlen) {
  char got[128];
  int t = lua_type(L, -1);
  if (lh_opt_secret(o))
    snprintf(got, sizeof got, "a %s (not shown: a secret)", lua_typename(L, t));
  else
    lh_lua_got(L, -1, got, sizeof got);
  switch (o->type) {
  case LH_OPT_INT: {
    if (t != LUA_TNUMBER)
      return lh_bad_value(o, where, got, err, errlen);
    lua_Number d = lua_tonumber(L, -1);
    if (!isfinite(d) || d != floor(d) || d < (lua_Number)LLONG_MIN / 2 ||
        d > (lua_Number)LLONG_MAX / 2)
      return lh_bad_value(o, where, got, err, errlen);
    return lh_set_int(cfg, o, (long long)d, where, got, err, errlen);
  }
  case LH_OPT_BOOL:
    if (t != LUA_TBOOLEAN)
      return lh_bad_value(o, where, got, err, errlen);
    *lh_opt_int(cfg, o) = lua_toboolean(L, -1);
    return 0;
  case LH_OPT_STR:
  case LH_OPT_ENUM: {
    if (t != LUA_TSTRING)
      return lh_bad_value(o, where, got, err, errlen);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    return lh_set_str(cfg, o, s, len, where, err, errlen);
  }
  case LH_OPT_LIST: return lh_file_list(L, cfg, o, where, err, errlen);
  case LH_OPT_APP: return lh_file_app(L, cfg, o, where, err, errlen);
  }
  return LH_EINVAL;
}

/* Applies every key of the table on top of the stack. */
static int lh_file_table(lua_State *L, lh_config_t *cfg, const char *path, char *err,
                         size_t errlen) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      char got[128];
      lh_lua_got(L, -2, got, sizeof got);
      lh_errf(err, errlen, "%s: option names must be strings, got %s", path, got);
      return LH_EINVAL;
    }
    size_t klen;
    const char *key = lua_tolstring(L, -2, &klen);
    const lh_opt_t *o = lh_opt_find(key, klen);
    if (!o) {
      char q[96];
      lh_quote(key, klen, q, sizeof q);
      const char *near = lh_config_near_option(key, klen);
      if (near)
        lh_errf(err, errlen, "%s: unknown option %s (did you mean %s?)", path, q, near);
      else
        lh_errf(err, errlen, "%s: unknown option %s", path, q);
      return LH_EINVAL;
    }
    char where[1100];
    snprintf(where, sizeof where, "%s: %s", path, o->name);
    int rc = lh_file_value(L, cfg, o, where, err, errlen);
    if (rc < 0)
      return rc;
    lua_pop(L, 1);
  }
  return 0;
}

/* Runs the file in a bare Lua state: no libraries, the JIT off (compiled loops would not run the
 * count hook), and an instruction budget, then applies the table it returns. */
static int lh_config_file(lh_config_t *cfg, const char *path, char *err, size_t errlen) {
  if (access(path, R_OK) != 0) {
    lh_errf(err, errlen, "%s: cannot read config file: %s", path, strerror(errno));
    return LH_EINVAL;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    lh_errf(err, errlen, "%s: cannot create a Lua state", path);
    return LH_ENOMEM;
  }
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  int budget = LH_CONFIG_MAX_INSTRUCTIONS / LH_CONFIG_HOOK_STEP;
  lua_pushlightuserdata(L, &budget);
  lua_setfield(L, LUA_REGISTRYINDEX, "lh_config_budget");

  int rc = 0;
  if (luaL_loadfile(L, path) != 0) {
    /* The message already names the file and line, e.g. "path:3: '}' expected near 'x'"; the
     * token after "near" is cut: in an unfinished string it is the rest of a secret's line. */
    const char *msg = lua_tostring(L, -1);
    const char *near = msg ? strstr(msg, " near ") : NULL;
    lh_errf(err, errlen, "%.*s", near ? (int)(near - msg) : (int)strlen(msg ? msg : ""),
            msg ? msg : "cannot load");
    rc = LH_EINVAL;
    goto done;
  }
  lua_sethook(L, lh_config_hook, LUA_MASKCOUNT, LH_CONFIG_HOOK_STEP);
  if (lua_pcall(L, 0, 1, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    lh_errf(err, errlen, "%s: %s", path, msg ? msg : "error");
    rc = LH_EINVAL;
    goto done;
  }
  lua_sethook(L, NULL, 0, 0);
  if (lua_type(L, -1) != LUA_TTABLE) {
    lh_errf(err, errlen, "%s: must return a table of options, returned %s", path,
            lua_typename(L, lua_type(L, -1)));
    rc = LH_EINVAL;
    goto done;
  }
  rc = lh_config_app_adopt(L, lua_gettop(L), path, err, errlen);
  if (rc == 0)
    rc = lh_file_table(L, cfg, path, err, errlen);
done:
  lua_close(L);
  return rc;
}

/* ---- environment variables --------------------------------------------------------------- */

int lh_config_parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(yes); i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return LH_EINVAL;
}

/* Splits a comma-separated list; blanks around items are ignored, an empty string is []. */
static int lh_env_list(lh_config_t *cfg, const lh_opt_t *o, const char *s, const char *where,
                       char *err, size_t errlen) {
  *lh_opt_count(cfg, o) = 0;
  if (*s == '\0')
    return 0;
  for (;;) {
    const char *comma = strchr(s, ',');
    const char *end = comma ? comma : s + strlen(s);
    const char *b = s, *e = end;
    while (b < e && isspace((unsigned char)*b))
      b++;
    while (e > b && isspace((unsigned char)e[-1]))
      e--;
    int rc = lh_list_add(cfg, o, b, (size_t)(e - b), where, err, errlen);
    if (rc < 0)
      return rc;
    if (!comma)
      return 0;
    s = comma + 1;
  }
}

static int lh_env_value(lh_config_t *cfg, const lh_opt_t *o, const char *s, const char *where,
                        char *err, size_t errlen) {
  char got[96];
  lh_quote_opt(o, s, strlen(s), got, sizeof got);
  switch (o->type) {
  case LH_OPT_INT: {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    /* strtoll accepts leading blanks; a strict reading wants the whole string to be a number. */
    if (errno != 0 || end == s || *end != '\0' || isspace((unsigned char)*s))
      return lh_bad_value(o, where, got, err, errlen);
    return lh_set_int(cfg, o, v, where, got, err, errlen);
  }
  case LH_OPT_BOOL: {
    int b;
    if (lh_config_parse_bool(s, &b) < 0)
      return lh_bad_value(o, where, got, err, errlen);
    *lh_opt_int(cfg, o) = b;
    return 0;
  }
  case LH_OPT_STR:
  case LH_OPT_ENUM: return lh_set_str(cfg, o, s, strlen(s), where, err, errlen);
  case LH_OPT_LIST: return lh_env_list(cfg, o, s, where, err, errlen);
  case LH_OPT_APP: break; /* set key by key: lh_config_app_env (config_app.c) */
  }
  return LH_EINVAL;
}

/* LUAHOST_<OPTION>_FILE names a file holding a string option's value (the Docker secrets
 * convention): read at every load, so a reload picks up a rotated secret. One trailing newline is
 * not part of the value. LUAHOST_<OPTION> itself wins when both are set. */
static int lh_env_file(lh_config_t *cfg, const lh_opt_t *o, const char *var, const char *path,
                       char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    lh_errf(err, errlen, "%s: cannot read %s: %s", var, path, strerror(errno));
    return LH_EINVAL;
  }
  char buf[1024];
  size_t n = fread(buf, 1, sizeof(buf), f);
  int bad = ferror(f) || n == sizeof(buf);
  fclose(f);
  if (bad) {
    lh_errf(err, errlen, "%s: %s is unreadable or larger than %zu bytes", var, path,
            sizeof(buf) - 1);
    return LH_EINVAL;
  }
  if (n > 0 && buf[n - 1] == '\n')
    n--;
  if (n > 0 && buf[n - 1] == '\r')
    n--;
  if (memchr(buf, '\0', n)) {
    lh_errf(err, errlen, "%s: %s holds a NUL byte", var, path);
    return LH_EINVAL;
  }
  int rc = lh_set_str(cfg, o, buf, n, var, err, errlen);
  memset(buf, 0, sizeof(buf));
  return rc;
}

static int lh_config_env(lh_config_t *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    const lh_opt_t *o = &lh_options[i];
    if (o->type == LH_OPT_APP)
      continue;
    char var[64] = "LUAHOST_";
    size_t pos = strlen(var);
    for (const char *p = o->name; *p && pos + 1 < sizeof var; p++)
      var[pos++] = (char)toupper((unsigned char)*p);
    var[pos] = '\0';
    const char *value = getenv(var);
    int rc = 0;
    if (value) {
      rc = lh_env_value(cfg, o, value, var, err, errlen);
    } else if (o->type == LH_OPT_STR && pos + 5 < sizeof var) {
      memcpy(var + pos, "_FILE", 6);
      const char *file = getenv(var);
      if (file)
        rc = lh_env_file(cfg, o, var, file, err, errlen);
    }
    if (rc < 0)
      return rc;
  }
  return 0;
}

/* ---- loading ----------------------------------------------------------------------------- */

int lh_config_load(lh_config_t *cfg, const char *path, char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  lh_config_defaults(cfg);
  if (path && !*path)
    path = NULL; /* an empty path (e.g. an empty command-line value) means "not given" */
  if (!path) {
    const char *env = getenv("LUAHOST_CONFIG");
    if (env && *env)
      path = env;
    else if (access(LH_CONFIG_DEFAULT_PATH, F_OK) == 0)
      path = LH_CONFIG_DEFAULT_PATH;
  }
  if (path) {
    if (strlen(path) >= sizeof cfg->source) {
      lh_errf(err, errlen, "config file path is too long");
      return LH_EINVAL;
    }
    int rc = lh_config_file(cfg, path, err, errlen);
    if (rc < 0)
      return LH_EINVAL;
    snprintf(cfg->source, sizeof cfg->source, "%s", path);
  }
  int rc = lh_config_env(cfg, err, errlen);
  return rc == 0 ? lh_config_app_env(cfg->app_json, sizeof cfg->app_json, err, errlen) : rc;
}

int lh_config_check_secrets(const lh_config_t *cfg, char *err, size_t errlen) {
  if (cfg->dev)
    return 0;
  if (strlen(cfg->jwt_secret) < 32) {
    lh_errf(err, errlen,
            "jwt_secret: must be at least 32 bytes outside development mode (set "
            "LUAHOST_JWT_SECRET, or LUAHOST_DEV=1 for development)");
    return LH_EINVAL;
  }
  if (cfg->jwt_previous_secret[0] && strlen(cfg->jwt_previous_secret) < 32) {
    lh_errf(err, errlen, "jwt_previous_secret: must be empty or at least 32 bytes");
    return LH_EINVAL;
  }
  return 0;
}

/* Compares one option's value in two configurations. */
static int lh_opt_equal(const lh_config_t *a, const lh_config_t *b, const lh_opt_t *o) {
  const char *pa = (const char *)a + o->off, *pb = (const char *)b + o->off;
  switch (o->type) {
  case LH_OPT_INT:
  case LH_OPT_BOOL: return *(const int *)pa == *(const int *)pb;
  case LH_OPT_STR:
  case LH_OPT_ENUM:
  case LH_OPT_APP: return strcmp(pa, pb) == 0;
  case LH_OPT_LIST: {
    int na = *(const int *)((const char *)a + o->count_off);
    int nb = *(const int *)((const char *)b + o->count_off);
    if (na != nb)
      return 0;
    for (int i = 0; i < na; i++) {
      if (strcmp(pa + (size_t)i * o->size, pb + (size_t)i * o->size) != 0)
        return 0;
    }
    return 1;
  }
  }
  return 0;
}

int lh_config_diff(const lh_config_t *old, const lh_config_t *cur, lh_config_change_cb cb,
                   void *ud) {
  int restart = 0;
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    const lh_opt_t *o = &lh_options[i];
    if (lh_opt_equal(old, cur, o))
      continue;
    if (!o->reloadable)
      restart = 1;
    if (cb)
      cb(o->name, o->reloadable, ud);
  }
  return restart;
}

int lh_config_keep_fixed(lh_config_t *cur, const lh_config_t *live, lh_config_change_cb cb,
                         void *ud) {
  int kept = 0;
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    const lh_opt_t *o = &lh_options[i];
    if (o->reloadable || lh_opt_equal(live, cur, o))
      continue;
    size_t bytes = o->type == LH_OPT_INT || o->type == LH_OPT_BOOL ? sizeof(int)
                   : o->type == LH_OPT_LIST                        ? o->size * LH_MAX_LIST
                                                                   : o->size;
    memcpy((char *)cur + o->off, (const char *)live + o->off, bytes);
    if (o->type == LH_OPT_LIST)
      *lh_opt_count(cur, o) = *lh_opt_count((lh_config_t *)live, o);
    kept++;
    if (cb)
      cb(o->name, 0, ud);
  }
  return kept;
}

/* Edit distance between a and b, or more than `cap` (the search stops there). */
static size_t lh_distance(const char *a, size_t al, const char *b, size_t bl, size_t cap) {
  if (al > 64 || bl > 64 || (al > bl ? al - bl : bl - al) > cap)
    return cap + 1;
  size_t row[65];
  for (size_t j = 0; j <= bl; j++)
    row[j] = j;
  for (size_t i = 1; i <= al; i++) {
    size_t diag = row[0], best = row[0] = i;
    for (size_t j = 1; j <= bl; j++) {
      size_t up = row[j];
      size_t v = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < v)
        v = up + 1;
      if (row[j - 1] + 1 < v)
        v = row[j - 1] + 1;
      row[j] = v;
      diag = up;
      if (v < best)
        best = v;
    }
    if (best > cap)
      return cap + 1;
  }
  return row[bl];
}

int lh_config_is_option(const char *name, size_t len) {
  return lh_opt_find(name, len) != NULL;
}

const char *lh_config_near_option(const char *name, size_t len) {
  if (len < 4)
    return NULL;
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_options); i++) {
    const char *o = lh_options[i].name;
    if (lh_distance(name, len, o, strlen(o), 2) <= 2)
      return o;
  }
  return NULL;
}

int lh_config_is_reloadable(const char *name) {
  const lh_opt_t *o = lh_opt_find(name, strlen(name));
  if (!o)
    return LH_ENOTFOUND;
  return o->reloadable;
}
