/* test_config.c: unit tests for host/config.c: defaults, the config file, environment overrides,
 * the file search order, every kind of error message, lists, and the shipped config/luahost.conf
 * (which must load and match the built-in defaults). */
#include "config.h"
#include "lh.h"
#include "lh_test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static char g_dir[256];
static char g_cwd[1024];

/* Removes every LUAHOST_* variable so that the caller's environment cannot change results. */
static void clear_env(void) {
  for (;;) {
    char name[128] = "";
    for (char **e = environ; *e; e++) {
      if (strncmp(*e, "LUAHOST_", 8) == 0) {
        size_t n = strcspn(*e, "=");
        if (n < sizeof name) {
          memcpy(name, *e, n);
          name[n] = '\0';
        }
        break;
      }
    }
    if (!name[0])
      return;
    unsetenv(name);
  }
}

/* Writes a config file into the test directory and returns its path (static buffer). */
static const char *write_conf(const char *name, const char *text) {
  static char path[512];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  FILE *f = fopen(path, "w");
  LH_CHECK(f != NULL);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
  return path;
}

/* Loads `text` as a config file; returns the result code and leaves the message in err. */
static int load_text(lh_config_t *cfg, const char *text, char *err, size_t errlen) {
  const char *path = write_conf("t.conf", text);
  return lh_config_load(cfg, path, err, errlen);
}

static int contains(const char *s, const char *needle) {
  if (!strstr(s, needle)) {
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", s, needle);
    return 0;
  }
  return 1;
}

static void test_defaults(void) {
  lh_config_t c;
  lh_config_defaults(&c);
  LH_CHECK_STR(c.listen, "127.0.0.1:8000");
  LH_CHECK_INT(c.workers, 0);
  LH_CHECK_STR(c.log_level, "info");
  LH_CHECK_INT(c.access_log, 1);
  LH_CHECK_INT(c.dev, 0);
  LH_CHECK_INT(c.max_url_bytes, 8192);
  LH_CHECK_INT(c.max_header_bytes, 16384);
  LH_CHECK_INT(c.max_header_fields, 100);
  LH_CHECK_INT(c.max_body_bytes, 65536);
  LH_CHECK_INT(c.header_timeout_ms, 10000);
  LH_CHECK_INT(c.body_timeout_ms, 10000);
  LH_CHECK_INT(c.idle_timeout_ms, 10000);
  LH_CHECK_INT(c.max_connections, 10000);
  LH_CHECK_INT(c.max_requests_per_conn, 1000);
  LH_CHECK_INT(c.shutdown_grace_ms, 10000);
  LH_CHECK_INT(c.drain_delay_ms, 0);
  LH_CHECK_STR(c.scripts, "scripts");
  LH_CHECK_INT(c.script_budget_ms, 1000);
  LH_CHECK_INT(c.jit, 0);
  LH_CHECK_INT(c.hook_interval, 10000);
  LH_CHECK_INT(c.script_memory_mb, 1024);
  LH_CHECK_INT(c.request_memory_mb, 128);
  LH_CHECK_INT(c.db_threads, 8);
  LH_CHECK_INT(c.db_queue, 256);
  LH_CHECK_INT(c.hash_threads, 2);
  LH_CHECK_INT(c.hash_queue, 64);
  LH_CHECK_STR(c.mongodb_uri, "mongodb://127.0.0.1:27017");
  LH_CHECK_STR(c.db, "mydatabase");
  LH_CHECK_INT(c.db_timeout_ms, 5000);
  LH_CHECK_STR(c.password_scheme, "argon2id");
  LH_CHECK_INT(c.argon2_t, 2);
  LH_CHECK_INT(c.argon2_m_kib, 19456);
  LH_CHECK_INT(c.bcrypt_cost, 12);
  LH_CHECK_STR(c.jwt_secret, "");
  LH_CHECK_STR(c.jwt_previous_secret, "");
  LH_CHECK_STR(c.jwt_issuer, "");
  LH_CHECK_STR(c.jwt_audience, "");
  LH_CHECK_INT(c.token_ttl, 1800);
  LH_CHECK_STR(c.app_json, "{}"); /* the application's defaults are the scripts' business */
  LH_CHECK_INT(c.n_trusted_proxies, 0);
  LH_CHECK_INT(c.n_cors_origins, 0);
  LH_CHECK_STR(c.source, "defaults");
}

static void test_file_values(void) {
  lh_config_t c;
  char err[512] = "";
  int rc = load_text(&c,
                     "-- a comment\n"
                     "return {\n"
                     "  listen = '[::1]:9000', workers = 4, log_level = 'debug',\n"
                     "  access_log = false, dev = true, max_body_bytes = 1024,\n"
                     "  mongodb_uri = 'mongodb://db:27017/?x=1', db = 'other',\n"
                     "  password_scheme = 'bcrypt', bcrypt_cost = 4, token_ttl = 60,\n"
                     "  jwt_secret = string and 'x' or 'abc',\n"
                     "  trusted_proxies = { '10.0.0.1', '::1' },\n"
                     "  cors_origins = { 'https://app.example.com', 'http://localhost:3000' },\n"
                     "  workers = 2 * 3,\n"
                     "}\n",
                     err, sizeof err);
  LH_CHECK_INT(rc, 0);
  if (rc)
    fprintf(stderr, "  %s\n", err);
  LH_CHECK_STR(c.listen, "[::1]:9000");
  LH_CHECK_INT(c.workers, 6); /* the later key of a table constructor wins, as in Lua */
  LH_CHECK_STR(c.log_level, "debug");
  LH_CHECK_INT(c.access_log, 0);
  LH_CHECK_INT(c.dev, 1);
  LH_CHECK_INT(c.max_body_bytes, 1024);
  LH_CHECK_STR(c.mongodb_uri, "mongodb://db:27017/?x=1");
  LH_CHECK_STR(c.db, "other");
  LH_CHECK_STR(c.password_scheme, "bcrypt");
  LH_CHECK_INT(c.bcrypt_cost, 4);
  LH_CHECK_INT(c.token_ttl, 60);
  LH_CHECK_STR(c.jwt_secret, "abc"); /* no libraries: `string` is nil */
  LH_CHECK_INT(c.n_trusted_proxies, 2);
  LH_CHECK_STR(c.trusted_proxies[0], "10.0.0.1");
  LH_CHECK_STR(c.trusted_proxies[1], "::1");
  LH_CHECK_INT(c.n_cors_origins, 2);
  LH_CHECK_STR(c.cors_origins[1], "http://localhost:3000");
  LH_CHECK(contains(c.source, "t.conf"));
  /* Options the file does not name keep their defaults. */
  LH_CHECK_INT(c.db_threads, 8);
  LH_CHECK_STR(c.app_json, "{}");
}

static void count_change(const char *name, int reloadable, void *ud);

/* The application's section: data only, kept as JSON; the legacy names land in it. */
static void test_app_section(void) {
  lh_config_t c;
  char err[512] = "";
  clear_env();
  int rc = load_text(&c,
                     "return { app = { users_collection = 'members', limits = { 1, 2.5 },\n"
                     "  nested = { on = true, name = 'caf\xc3\xa9' }, empty = {} } }\n",
                     err, sizeof err);
  LH_CHECK_INT(rc, 0);
  if (rc)
    fprintf(stderr, "  %s\n", err);
  LH_CHECK_STR(c.app_json, "{\"empty\":{},\"limits\":[1,2.5],\"nested\":{\"name\":\"caf\xc3\xa9\","
                           "\"on\":true},\"users_collection\":\"members\"}");
  /* A legacy top-level key is app.<key> (deprecated, logged). */
  rc = load_text(&c, "return { admin_username = 'root', admin_userage = 40 }", err, sizeof err);
  LH_CHECK_INT(rc, 0);
  LH_CHECK_STR(c.app_json, "{\"admin_userage\":40,\"admin_username\":\"root\"}");
  rc = load_text(&c, "return { login_window_s = 60, app = { login_window_s = 30 } }", err,
                 sizeof err);
  LH_CHECK_INT(rc, LH_EINVAL);
  LH_CHECK(contains(err, "login_window_s is given both at the top level and in app"));
  /* A LUAHOST_<NAME> that is no host option lands as app.<name>, like LUAHOST_APP_<KEY>; both
   * take the type of the file's value, a string when the file has none (the app converts). */
  setenv("LUAHOST_LOGIN_MAX_PER_PAIR", "7", 1);
  setenv("LUAHOST_ADMIN_PASSWORD", "12345", 1);
  setenv("LUAHOST_APP_FLAG", "off", 1);
  setenv("LUAHOST_APP_RATIO", "0.5", 1);
  setenv("LUAHOST_APP_NEW_KEY", "42", 1);
  rc = load_text(&c, "return { app = { flag = true, ratio = 1 } }", err, sizeof err);
  LH_CHECK_INT(rc, 0);
  if (rc)
    fprintf(stderr, "  %s\n", err);
  LH_CHECK_STR(c.app_json, "{\"admin_password\":\"12345\",\"flag\":false,"
                           "\"login_max_per_pair\":\"7\",\"new_key\":\"42\",\"ratio\":0.5}");
  clear_env();
  setenv("LUAHOST_LOGIN_WINDOW_S", "soon", 1);
  rc = load_text(&c, "return { app = { login_window_s = 900 } }", err, sizeof err);
  LH_CHECK_INT(rc, LH_EINVAL);
  LH_CHECK_STR(err, "LUAHOST_LOGIN_WINDOW_S: must be a number, got 'soon'");
  clear_env();
  /* The host's own variables never land in the section. */
  setenv("LUAHOST_WORKERS", "2", 1);
  setenv("LUAHOST_CONFIG", "/nonexistent", 1);
  rc = load_text(&c, "return { }", err, sizeof err);
  LH_CHECK_INT(rc, 0);
  LH_CHECK_STR(c.app_json, "{}");
  clear_env();
  setenv("LUAHOST_APP_FLAG", "maybe", 1);
  LH_CHECK_INT(load_text(&c, "return { app = { flag = true } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_APP_FLAG: must be a boolean"));
  clear_env();
  setenv("LUAHOST_APP_", "x", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_APP_: the key after LUAHOST_APP_ must be a name"));
  clear_env();
  /* Only data: no functions, no invalid UTF-8, no odd keys, bounded depth. */
  LH_CHECK_INT(load_text(&c, "return { app = { f = function() end } }", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "app: a function is not data (at key 'f')"));
  LH_CHECK_INT(load_text(&c, "return { app = { s = '\xff' } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "strings must be valid UTF-8 (at key 's')"));
  LH_CHECK_INT(load_text(&c, "return { app = { ['Bad-Key'] = 1 } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "its keys must be names"));
  LH_CHECK_INT(load_text(&c,
                         "return { app = { a = { b = { c = { d = { e = { f = { g = { h = {} "
                         "} } } } } } } } }",
                         err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "nested deeper than 8 levels"));
  LH_CHECK_INT(load_text(&c, "return { app = { m = { 1, x = 2 } } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "app: "));
  LH_CHECK_INT(load_text(&c, "return { app = 'x' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "app: must be a table of strings, numbers, booleans and tables"));
  LH_CHECK_INT(load_text(&c, "return { app = { n = 0/0 } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "numbers must be finite"));
  /* Too large as JSON. */
  LH_CHECK_INT(
      load_text(&c,
                "local s = 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'"
                " s = s .. s s = s .. s s = s .. s s = s .. s s = s .. s s = s .. s "
                "s = s .. s s = s .. s return { app = { big = s } }",
                err, sizeof err),
      LH_EINVAL);
  LH_CHECK(contains(err, "longer than 16383 bytes as JSON"));
  /* A changed section is a reloadable change named "app". */
  lh_config_t a, b;
  lh_config_defaults(&a);
  lh_config_defaults(&b);
  snprintf(b.app_json, sizeof b.app_json, "{\"x\":1}");
  int changes = 0;
  LH_CHECK_INT(lh_config_diff(&a, &b, count_change, &changes), 0);
  LH_CHECK_INT(changes, 1);
  LH_CHECK_INT(lh_config_is_reloadable("app"), 1);
}

static void test_env_overrides_file(void) {
  lh_config_t c;
  char err[512] = "";
  setenv("LUAHOST_WORKERS", "3", 1);
  setenv("LUAHOST_DEV", "yes", 1);
  setenv("LUAHOST_ACCESS_LOG", "OFF", 1);
  setenv("LUAHOST_MONGODB_URI", "mongodb://env:1", 1);
  setenv("LUAHOST_DB", "envdb", 1);
  setenv("LUAHOST_TOKEN_TTL", "120", 1);
  setenv("LUAHOST_JWT_SECRET", "", 1);
  setenv("LUAHOST_TRUSTED_PROXIES", " 10.1.1.1 , 2001:db8::1,127.0.0.1", 1);
  setenv("LUAHOST_CORS_ORIGINS", "", 1);
  int rc =
      load_text(&c,
                "return { workers = 8, db = 'filedb', jwt_secret = 'from-file',\n"
                "  trusted_proxies = { '1.2.3.4' }, cors_origins = { '*' }, bcrypt_cost = 5 }\n",
                err, sizeof err);
  LH_CHECK_INT(rc, 0);
  if (rc)
    fprintf(stderr, "  %s\n", err);
  LH_CHECK_INT(c.workers, 3);
  LH_CHECK_INT(c.dev, 1);
  LH_CHECK_INT(c.access_log, 0);
  LH_CHECK_STR(c.mongodb_uri, "mongodb://env:1");
  LH_CHECK_STR(c.db, "envdb");
  LH_CHECK_INT(c.token_ttl, 120);
  LH_CHECK_STR(c.jwt_secret, ""); /* an empty variable still overrides */
  LH_CHECK_INT(c.n_trusted_proxies, 3);
  LH_CHECK_STR(c.trusted_proxies[0], "10.1.1.1");
  LH_CHECK_STR(c.trusted_proxies[1], "2001:db8::1");
  LH_CHECK_STR(c.trusted_proxies[2], "127.0.0.1");
  LH_CHECK_INT(c.n_cors_origins, 0);
  LH_CHECK_INT(c.bcrypt_cost, 5); /* from the file, no variable set */
  clear_env();
}

static void test_env_bools_and_ints(void) {
  static const char *const truthy[] = {"1", "true", "TRUE", "yes", "on", "On"};
  static const char *const falsy[] = {"0", "false", "no", "off", "NO"};
  lh_config_t c;
  char err[512];
  for (size_t i = 0; i < LH_ARRAY_SIZE(truthy); i++) {
    setenv("LUAHOST_JIT", truthy[i], 1);
    LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), 0);
    LH_CHECK_INT(c.jit, 1);
  }
  for (size_t i = 0; i < LH_ARRAY_SIZE(falsy); i++) {
    setenv("LUAHOST_JIT", falsy[i], 1);
    LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), 0);
    LH_CHECK_INT(c.jit, 0);
  }
  setenv("LUAHOST_JIT", "maybe", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_JIT: must be a boolean"));
  LH_CHECK(contains(err, "'maybe'"));
  clear_env();

  static const char *const bad_ints[] = {
      "abc", "", " 4", "4 ", "4x", "0x10", "1e3", "2.5", "99999999999999999999"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(bad_ints); i++) {
    setenv("LUAHOST_WORKERS", bad_ints[i], 1);
    err[0] = '\0';
    LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
    LH_CHECK(contains(err, "LUAHOST_WORKERS: must be an integer between 0 and 256, got '"));
  }
  setenv("LUAHOST_WORKERS", "abc", 1);
  lh_config_load(&c, "", err, sizeof err);
  LH_CHECK_STR(err, "LUAHOST_WORKERS: must be an integer between 0 and 256, got 'abc'");
  setenv("LUAHOST_WORKERS", "257", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK_STR(err, "LUAHOST_WORKERS: must be an integer between 0 and 256, got '257'");
  setenv("LUAHOST_WORKERS", "-1", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  setenv("LUAHOST_WORKERS", "256", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), 0);
  LH_CHECK_INT(c.workers, 256);
  setenv("LUAHOST_WORKERS", "+7", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), 0);
  LH_CHECK_INT(c.workers, 7);
  clear_env();
  setenv("LUAHOST_BCRYPT_COST", "3", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK_STR(err, "LUAHOST_BCRYPT_COST: must be an integer between 4 and 31, got '3'");
  clear_env();
}

static void test_env_errors(void) {
  lh_config_t c;
  char err[512];
  setenv("LUAHOST_LOG_LEVEL", "verbose", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK_STR(err, "LUAHOST_LOG_LEVEL: must be one of debug, info, warn, error, got 'verbose'");
  clear_env();
  setenv("LUAHOST_LISTEN", "localhost:80", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_LISTEN: 'localhost' is not an IPv4 address"));
  clear_env();
  setenv("LUAHOST_TRUSTED_PROXIES", "10.0.0.1,,10.0.0.2", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_TRUSTED_PROXIES: items must be non-empty"));
  setenv("LUAHOST_TRUSTED_PROXIES", "10.0.0.1,proxy.local", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_TRUSTED_PROXIES: 'proxy.local' is not an IP address"));
  clear_env();
  setenv("LUAHOST_CORS_ORIGINS", "https://a.example/path", 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_CORS_ORIGINS: 'https://a.example/path' is not an origin"));
  clear_env();
  char big[400];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  setenv("LUAHOST_JWT_ISSUER", big, 1);
  LH_CHECK_INT(lh_config_load(&c, "", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_JWT_ISSUER: must be a string of at most 255 bytes"));
  clear_env();
}

static void test_listen_validation(void) {
  static const char *const good[] = {"127.0.0.1:8000", "0.0.0.0:1", "[::]:65535", "[::1]:80",
                                     "[2001:db8::1]:443"};
  static const char *const bad[] = {
      "127.0.0.1", "127.0.0.1:",   "127.0.0.1:0",  "127.0.0.1:65536", "127.0.0.1:80x",
      "::1:80",    "[::1]80",      "[::1]:",       "[nope]:80",       "1.2.3:80",
      ":80",       "127.0.0.1:-1", "[::1]:0080000"};
  lh_config_t c;
  char err[512], text[256];
  for (size_t i = 0; i < LH_ARRAY_SIZE(good); i++) {
    snprintf(text, sizeof text, "return { listen = '%s' }", good[i]);
    int rc = load_text(&c, text, err, sizeof err);
    if (rc)
      fprintf(stderr, "  '%s': %s\n", good[i], err);
    LH_CHECK_INT(rc, 0);
    LH_CHECK_STR(c.listen, good[i]);
  }
  for (size_t i = 0; i < LH_ARRAY_SIZE(bad); i++) {
    snprintf(text, sizeof text, "return { listen = '%s' }", bad[i]);
    err[0] = '\0';
    int rc = load_text(&c, text, err, sizeof err);
    if (rc != LH_EINVAL)
      fprintf(stderr, "  '%s' was accepted\n", bad[i]);
    LH_CHECK_INT(rc, LH_EINVAL);
    LH_CHECK(contains(err, "t.conf: listen: "));
  }
}

static void test_file_errors(void) {
  lh_config_t c;
  char err[512];
  /* A near miss of a host option is a typo, not an application setting. */
  LH_CHECK_INT(load_text(&c, "return { listn = '1.2.3.4:5' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: unknown option 'listn' (did you mean listen?)"));
  LH_CHECK_INT(load_text(&c, "return { wokers = 2 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "(did you mean workers?)"));
  LH_CHECK_INT(load_text(&c, "return { Listen = '1.2.3.4:5' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "unknown option 'Listen'"));

  LH_CHECK_INT(load_text(&c, "return { workers = 'abc' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(
      contains(err, "t.conf: workers: must be an integer between 0 and 256, got string 'abc'"));
  LH_CHECK_INT(load_text(&c, "return { workers = 1.5 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "got 1.5"));
  LH_CHECK_INT(load_text(&c, "return { workers = 0/0 }", err, sizeof err), LH_EINVAL);
  LH_CHECK_INT(load_text(&c, "return { workers = 1/0 }", err, sizeof err), LH_EINVAL);
  LH_CHECK_INT(load_text(&c, "return { workers = 1000 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: workers: must be an integer between 0 and 256, got 1000"));
  LH_CHECK_INT(load_text(&c, "return { dev = 1 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: dev: must be a boolean"));
  LH_CHECK_INT(load_text(&c, "return { db = 5 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: db: must be a string of at most 127 bytes, got 5"));
  LH_CHECK_INT(load_text(&c, "return { db = 'a\\0b' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "NUL"));
  LH_CHECK_INT(load_text(&c, "return { password_scheme = 'md5' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: password_scheme: must be one of argon2id, bcrypt, got 'md5'"));
  LH_CHECK_INT(load_text(&c, "return { log_level = 'loud' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: log_level: must be one of debug, info, warn, error"));
  LH_CHECK_INT(load_text(&c, "return { listen = '1.2.3.4:99999' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: listen: the port must be a number between 1 and 65535"));
  LH_CHECK_INT(load_text(&c, "return { [1] = 'x' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "option names must be strings"));

  /* Syntax errors name the file and the line. */
  LH_CHECK_INT(load_text(&c, "return {\n  workers = 1,\n  db = = 'x',\n}\n", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "t.conf:3:"));
  /* Runtime errors too. */
  LH_CHECK_INT(load_text(&c, "local x = nil\nreturn { workers = x.y }\n", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "t.conf:2:"));
  /* No library is there to call. */
  LH_CHECK_INT(load_text(&c, "return { db = os.getenv('HOME') }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf"));

  LH_CHECK_INT(load_text(&c, "return 42", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: must return a table of options, returned number"));
  LH_CHECK_INT(load_text(&c, "x = 1", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "returned nil"));

  /* An endless loop stops with an error instead of hanging. */
  unsigned long long t0 = lh_now_ns();
  LH_CHECK_INT(load_text(&c, "while true do end", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: "));
  LH_CHECK(contains(err, "endless loop"));
  LH_CHECK_INT(load_text(&c, "local function f() return f() end return f()", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "endless loop"));
  printf("     endless loops stopped in %.1f ms\n", (double)(lh_now_ns() - t0) / 1e6);

  /* A named file that does not exist is an error. */
  char missing[512];
  snprintf(missing, sizeof missing, "%s/missing.conf", g_dir);
  LH_CHECK_INT(lh_config_load(&c, missing, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "missing.conf: cannot read config file"));
}

static void test_list_errors(void) {
  lh_config_t c;
  char err[512];
  LH_CHECK_INT(load_text(&c, "return { trusted_proxies = '10.0.0.1' }", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: trusted_proxies: must be a list of at most 16 strings"));
  LH_CHECK_INT(load_text(&c, "return { trusted_proxies = { 5 } }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "got item 1 5"));
  LH_CHECK_INT(load_text(&c, "return { trusted_proxies = { a = '1.1.1.1' } }", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "non-list keys"));
  LH_CHECK_INT(load_text(&c, "return { trusted_proxies = { 'proxy' } }", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "t.conf: trusted_proxies: 'proxy' is not an IP address"));
  LH_CHECK_INT(load_text(&c, "return { cors_origins = { 'ftp://x' } }", err, sizeof err),
               LH_EINVAL);
  LH_CHECK(contains(err, "is not an origin"));
  /* 16 items fit, 17 do not. */
  char text[1024] = "return { trusted_proxies = {";
  for (int i = 0; i < 16; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "'10.0.0.%d',", i);
  strcat(text, "} }");
  LH_CHECK_INT(load_text(&c, text, err, sizeof err), 0);
  LH_CHECK_INT(c.n_trusted_proxies, 16);
  LH_CHECK_STR(c.trusted_proxies[15], "10.0.0.15");
  text[strlen(text) - 3] = '\0';
  strcat(text, "'10.0.0.99'} }");
  LH_CHECK_INT(load_text(&c, text, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "at most 16 items"));
  /* An empty table is an empty list. */
  LH_CHECK_INT(load_text(&c, "return { cors_origins = {} }", err, sizeof err), 0);
  LH_CHECK_INT(c.n_cors_origins, 0);
}

static void test_search_order(void) {
  lh_config_t c;
  char err[512];
  char confdir[512];
  snprintf(confdir, sizeof confdir, "%s/config", g_dir);
  /* With no file anywhere, the defaults are used. */
  LH_CHECK_INT(chdir(g_dir), 0);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_STR(c.source, "defaults");
  /* config/luahost.conf in the current directory is picked up. */
  LH_CHECK_INT(mkdir(confdir, 0700), 0);
  write_conf("config/luahost.conf", "return { workers = 11 }");
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_INT(c.workers, 11);
  LH_CHECK_STR(c.source, "config/luahost.conf");
  /* $LUAHOST_CONFIG wins over it ... */
  const char *other = write_conf("other.conf", "return { workers = 12 }");
  char other_path[512];
  snprintf(other_path, sizeof other_path, "%s", other);
  setenv("LUAHOST_CONFIG", other_path, 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_INT(c.workers, 12);
  LH_CHECK_STR(c.source, other_path);
  /* ... and a path argument wins over both. */
  const char *third = write_conf("third.conf", "return { workers = 13 }");
  LH_CHECK_INT(lh_config_load(&c, third, err, sizeof err), 0);
  LH_CHECK_INT(c.workers, 13);
  /* A $LUAHOST_CONFIG naming a missing file is an error, not a fallback. */
  setenv("LUAHOST_CONFIG", "/nonexistent/luahost.conf", 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "/nonexistent/luahost.conf: cannot read config file"));
  clear_env();
  char path[512];
  snprintf(path, sizeof path, "%s/config/luahost.conf", g_dir);
  unlink(path);
  rmdir(confdir);
  LH_CHECK_INT(chdir(g_cwd), 0);
}

static void count_change(const char *name, int reloadable, void *ud) {
  int *n = ud;
  (*n)++;
  (void)name;
  (void)reloadable;
}

static void test_shipped_file_is_defaults(void) {
  /* __FILE__ is .../tests/c/test_config.c; the shipped file is .../config/luahost.conf. */
  char path[1024];
  const char *file = __FILE__;
  const char *tail = strstr(file, "tests/c/test_config.c");
  size_t root = tail ? (size_t)(tail - file) : 0;
  snprintf(path, sizeof path, "%.*sconfig/luahost.conf", (int)root, file);
  lh_config_t shipped, defaults;
  char err[512] = "";
  int rc = lh_config_load(&shipped, path, err, sizeof err);
  if (rc)
    fprintf(stderr, "  %s\n", err);
  LH_CHECK_INT(rc, 0);
  lh_config_defaults(&defaults);
  /* The host's options match the built-in defaults; the application's section documents the
   * user service's settings with the values its scripts default to. */
  LH_CHECK_STR(
      shipped.app_json,
      "{\"admin_password\":\"\",\"admin_userage\":0,\"admin_username\":\"\","
      "\"login_max_per_addr\":100,\"login_max_per_pair\":5,\"login_max_per_user\":20,"
      "\"login_window_s\":900,\"throttle_store\":\"mongodb\",\"users_collection\":\"users\"}");
  snprintf(defaults.app_json, sizeof defaults.app_json, "%s", shipped.app_json);
  int changes = 0;
  LH_CHECK_INT(lh_config_diff(&defaults, &shipped, count_change, &changes), 0);
  LH_CHECK_INT(changes, 0);
  /* Every option is documented: each appears as "name =" and with its variable name. */
  FILE *f = fopen(path, "r");
  LH_CHECK(f != NULL);
  if (!f)
    return;
  static char text[65536];
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = '\0';
  fclose(f);
  static const char *const some[] = {
      "LUAHOST_LISTEN", "LUAHOST_MONGODB_URI",  "LUAHOST_DB",       "LUAHOST_TOKEN_TTL",
      "LUAHOST_DEV",    "LUAHOST_CORS_ORIGINS", "login_window_s =", "LUAHOST_APP_"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(some); i++)
    LH_CHECK(contains(text, some[i]));
}

static void test_diff_and_secrets(void) {
  lh_config_t a, b;
  char err[256];
  lh_config_defaults(&a);
  lh_config_defaults(&b);
  LH_CHECK_INT(lh_config_diff(&a, &b, NULL, NULL), 0);
  b.token_ttl = 60;
  snprintf(b.log_level, sizeof b.log_level, "debug");
  int changes = 0;
  LH_CHECK_INT(lh_config_diff(&a, &b, count_change, &changes), 0); /* both reloadable */
  LH_CHECK_INT(changes, 2);
  b.workers = 3;
  LH_CHECK_INT(lh_config_diff(&a, &b, NULL, NULL), 1);
  b = a;
  b.n_cors_origins = 1;
  snprintf(b.cors_origins[0], sizeof b.cors_origins[0], "*");
  LH_CHECK_INT(lh_config_diff(&a, &b, NULL, NULL), 0);
  LH_CHECK_INT(lh_config_is_reloadable("listen"), 0);
  LH_CHECK_INT(lh_config_is_reloadable("token_ttl"), 1);
  LH_CHECK_INT(lh_config_is_reloadable("nope"), LH_ENOTFOUND);

  LH_CHECK_INT(lh_config_check_secrets(&a, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "jwt_secret"));
  a.dev = 1;
  LH_CHECK_INT(lh_config_check_secrets(&a, err, sizeof err), 0);
  a.dev = 0;
  snprintf(a.jwt_secret, sizeof a.jwt_secret, "0123456789abcdef0123456789abcdef");
  LH_CHECK_INT(lh_config_check_secrets(&a, err, sizeof err), 0);
  snprintf(a.jwt_previous_secret, sizeof a.jwt_previous_secret, "short");
  LH_CHECK_INT(lh_config_check_secrets(&a, err, sizeof err), LH_EINVAL);
}

/* The shipped file marks exactly the reloadable options "(reload)": the comment block right
 * above each top-level "name = " line says it when the table (config.c) does. */
static void test_shipped_file_marks_reloadable(void) {
  const char *file = __FILE__;
  const char *tail = strstr(file, "tests/c/test_config.c");
  char path[1024];
  snprintf(path, sizeof path, "%.*sconfig/luahost.conf", (int)(tail ? tail - file : 0), file);
  FILE *f = fopen(path, "r");
  LH_CHECK(f != NULL);
  if (!f)
    return;
  char line[512];
  int block_reload = 0, seen = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "  --", 4) == 0) {
      if (strncmp(line, "  ----", 6) == 0)
        block_reload = 0;
      else if (strstr(line, "(reload)"))
        block_reload = 1;
      continue;
    }
    char name[64];
    if (sscanf(line, "  %63[a-z0-9_] =", name) == 1 && line[2] != ' ') {
      int r = lh_config_is_reloadable(name);
      if (r != LH_ENOTFOUND) {
        seen++;
        if (r != block_reload)
          fprintf(stderr, "  %s: table says %s, the file %s\n", name, r ? "reloadable" : "restart",
                  block_reload ? "(reload)" : "nothing");
        LH_CHECK_INT(block_reload, r);
      }
    }
    block_reload = 0;
  }
  fclose(f);
  LH_CHECK(seen > 40);
}

typedef struct {
  char names[256];
} kept_t;

static void on_kept(const char *name, int reloadable, void *ud) {
  kept_t *k = ud;
  size_t n = strlen(k->names);
  snprintf(k->names + n, sizeof k->names - n, "%s%s", n ? "," : "", name);
  LH_CHECK_INT(reloadable, 0);
}

/* A reload keeps the running value of every option that needs a restart, and names it. */
static void test_keep_fixed(void) {
  lh_config_t live, cur;
  lh_config_defaults(&live);
  lh_config_defaults(&cur);
  snprintf(cur.listen, sizeof cur.listen, "127.0.0.1:9999");
  cur.workers = 7;
  cur.token_ttl = 60; /* reloadable: stays */
  cur.n_trusted_proxies = 1;
  snprintf(cur.trusted_proxies[0], sizeof cur.trusted_proxies[0], "10.0.0.1"); /* reloadable */
  snprintf(cur.password_scheme, sizeof cur.password_scheme, "bcrypt");
  kept_t k = {""};
  LH_CHECK_INT(lh_config_keep_fixed(&cur, &live, on_kept, &k), 3);
  LH_CHECK_STR(k.names, "listen,workers,password_scheme");
  LH_CHECK_STR(cur.listen, live.listen);
  LH_CHECK_INT(cur.workers, live.workers);
  LH_CHECK_STR(cur.password_scheme, "argon2id");
  LH_CHECK_INT(cur.token_ttl, 60);
  LH_CHECK_INT(cur.n_trusted_proxies, 1);
  LH_CHECK_INT(lh_config_keep_fixed(&cur, &live, NULL, NULL), 0);
}

/* LUAHOST_<OPTION>_FILE reads a string option from a file, at every load. */
static void test_env_file(void) {
  lh_config_t c;
  char err[512] = "";
  char empty[600];
  snprintf(empty, sizeof empty, "%s", write_conf("empty.conf", "return {}"));
  setenv("LUAHOST_CONFIG", empty, 1);
  const char *path = write_conf("secret.txt", "0123456789abcdef0123456789abcdef\n");
  setenv("LUAHOST_JWT_SECRET_FILE", path, 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_STR(c.jwt_secret, "0123456789abcdef0123456789abcdef");
  LH_CHECK_STR(c.app_json, "{}"); /* not taken for an application setting */
  write_conf("secret.txt", "rotated-rotated-rotated-rotated-!");
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_STR(c.jwt_secret, "rotated-rotated-rotated-rotated-!");
  setenv("LUAHOST_JWT_SECRET", "from-the-variable-itself-wins-0123", 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_STR(c.jwt_secret, "from-the-variable-itself-wins-0123");
  unsetenv("LUAHOST_JWT_SECRET");
  char missing[600];
  snprintf(missing, sizeof missing, "%s/nope.txt", g_dir);
  setenv("LUAHOST_JWT_SECRET_FILE", missing, 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_JWT_SECRET_FILE"));
  LH_CHECK(contains(err, "nope.txt"));
  unsetenv("LUAHOST_JWT_SECRET_FILE");
  setenv("LUAHOST_ADMIN_LISTEN", "nowhere", 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_ADMIN_LISTEN"));
  setenv("LUAHOST_ADMIN_LISTEN", "off", 1);
  LH_CHECK_INT(lh_config_load(&c, NULL, err, sizeof err), 0);
  LH_CHECK_STR(c.admin_listen, "off");
  unsetenv("LUAHOST_ADMIN_LISTEN");
  unsetenv("LUAHOST_CONFIG");
}

/* A bad secret's value never reaches a message (reload errors go to the log and the status). */
static void test_secrets_stay_out_of_messages(void) {
  lh_config_t c;
  char err[1024] = "";
  static char token[700];
  memset(token, 'K', sizeof token - 1);
  memcpy(token, "TOPSECRET", 9);
  setenv("LUAHOST_ADMIN_TOKEN", token, 1);
  LH_CHECK_INT(load_text(&c, "return {}", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "LUAHOST_ADMIN_TOKEN"));
  LH_CHECK(contains(err, "not shown: a secret"));
  LH_CHECK(strstr(err, "TOPSECRET") == NULL);
  unsetenv("LUAHOST_ADMIN_TOKEN");
  LH_CHECK_INT(
      load_text(&c, "return {\n  jwt_secret = \"TOPSECRET-and-the-rest\n}\n", err, sizeof err),
      LH_EINVAL);
  LH_CHECK(contains(err, "t.conf:2:"));
  LH_CHECK(strstr(err, "TOPSECRET") == NULL);
  LH_CHECK_INT(load_text(&c, "return { admin_token = 1234567890123 }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "not shown: a secret"));
  LH_CHECK(strstr(err, "1234567890123") == NULL);
  LH_CHECK_INT(load_text(&c, "return { log_level = 'nope' }", err, sizeof err), LH_EINVAL);
  LH_CHECK(contains(err, "'nope'")); /* other values are still shown */
}

int main(void) {
  clear_env();
  if (!getcwd(g_cwd, sizeof g_cwd))
    return 2;
  snprintf(g_dir, sizeof g_dir, "/tmp/lh_test_config_XXXXXX");
  if (!mkdtemp(g_dir))
    return 2;
  LH_RUN(test_defaults);
  LH_RUN(test_file_values);
  LH_RUN(test_env_overrides_file);
  LH_RUN(test_app_section);
  LH_RUN(test_env_bools_and_ints);
  LH_RUN(test_env_errors);
  LH_RUN(test_listen_validation);
  LH_RUN(test_file_errors);
  LH_RUN(test_list_errors);
  LH_RUN(test_search_order);
  LH_RUN(test_shipped_file_is_defaults);
  LH_RUN(test_diff_and_secrets);
  LH_RUN(test_shipped_file_marks_reloadable);
  LH_RUN(test_keep_fixed);
  LH_RUN(test_env_file);
  LH_RUN(test_secrets_stay_out_of_messages);
  char path[512];
  static const char *const files[] = {"t.conf", "other.conf", "third.conf"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(files); i++) {
    snprintf(path, sizeof path, "%s/%s", g_dir, files[i]);
    unlink(path);
  }
  rmdir(g_dir);
  return lh_test_done();
}
