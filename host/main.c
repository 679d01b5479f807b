/* main.c: command line, start-up order and exit codes.
 *   luahost --version | -v           print "luahost <version>" (LH_VERSION, from CMakeLists.txt)
 *   luahost --help | -h              print the usage to stdout
 *   luahost [--config FILE]          run the server
 *   luahost [--config FILE] check    validate the configuration and scripts and run the policy
 *                                    tests without serving; exit 0 or 1 (`-t`, `--check`: aliases)
 *   luahost [--config FILE] reload   ask the running host to reload (cli_reload.h)
 *   luahost migrate [ARGS...]        run the scripts' "migrate" command (see scripts/lib)
 *   luahost command NAME [ARGS...]   run any command the scripts declare
 * Start-up order: configuration, logging, the registered modules' init (secrets, hashing, database
 * pool), job pools, then the workers. Built twice: `luahost` (the product) and `luahost-test`
 * (with LH_TEST_HOST: adds the test-only module of tests/host/, for the integration tests).
 * Anything wrong stops the start with a message naming the cause. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "candidate.h"
#include "cli_reload.h"
#include "config.h"
#include "jobs.h"
#include "lh.h"
#include "log.h"
#include "register.h"
#include "server.h"
#include "vm.h"
#ifdef LH_TEST_HOST
#include "test_module.h"
#endif

#ifndef LH_VERSION
#error "LH_VERSION is defined by CMakeLists.txt (project VERSION)"
#endif

static const char lh_usage_text[] =
    "usage: luahost [--config FILE] [COMMAND [ARGS...]]\n"
    "\n"
    "Without a command, serve: the configuration is config/luahost.conf, $LUAHOST_CONFIG or\n"
    "FILE, then LUAHOST_<OPTION> variables.\n"
    "\n"
    "commands:\n"
    "  check                validate the configuration and scripts and run the policy tests\n"
    "                       without serving; exit 0 or 1 (aliases: -t, --check)\n"
    "  reload               ask the running host to reload its scripts and configuration,\n"
    "                       over its admin listener (admin_listen, admin_token of this\n"
    "                       configuration); prints JSON; exit 0 when live\n"
    "  migrate [ARGS...]    run the scripts' \"migrate\" command (prints JSON)\n"
    "  command NAME [ARGS...]\n"
    "                       run any command the scripts declare\n"
    "\n"
    "options:\n"
    "  --config FILE        the configuration file\n"
    "  -h, --help           print this help and exit\n"
    "  -v, --version        print the version and exit\n"
    "\n"
    "signals: SIGTERM, SIGINT, SIGQUIT stop gracefully (drain, then exit 0); SIGHUP reloads;\n"
    "SIGUSR1 reopens the log files (access_log_path, error_log_path).\n";

static int usage(void) {
  fputs(lh_usage_text, stderr);
  return 2;
}

typedef struct {
  int done, ok;
} lh_command_result_t;

static void on_command_done(void *ud, int ok, const char *text) {
  lh_command_result_t *r = ud;
  r->done = 1;
  r->ok = ok;
  printf("%s\n", text);
  fflush(stdout);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

/* Tears down a command's own loop: its completion queue, every handle left, then the VM. */
static void close_loop(uv_loop_t *loop, lh_cq_t *cq, lh_vm_t *vm) {
  if (cq)
    lh_cq_close(cq);
  uv_walk(loop, close_walk, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  lh_vm_free(vm);
  uv_loop_close(loop);
}

/* Runs a script command on a loop of its own: it may use the database and hashing like a request.
 */
static int run_command(const lh_config_t *cfg, const char *name, int argc, char **argv) {
  uv_loop_t loop;
  lh_cq_t *cq = NULL;
  lh_vm_t *vm = NULL;
  char err[1024] = "";
  lh_command_result_t res = {0, 0};
  uv_loop_init(&loop);
  int rc = lh_cq_create(&cq, &loop);
  if (rc == 0)
    rc = lh_vm_create(&vm, cfg, &loop, cq, err, sizeof(err));
  if (rc == 0) {
    lh_vm_run_hook(vm, name, argc, argv, on_command_done, &res);
    while (!res.done && uv_run(&loop, UV_RUN_ONCE))
      ;
  } else {
    fprintf(stderr, "luahost: %s\n", err[0] ? err : lh_strerror(rc));
  }
  lh_pools_destroy_all(); /* delivers nothing: every job of the command has completed */
  close_loop(&loop, cq, vm);
  return res.done && res.ok ? 0 : 1;
}

/* `luahost check`: the scripts as start-up would load them, then their policy tests: the same
 * validation as a reload's (candidate.h), without the on_start hooks and without pools (a
 * database call answers `unavailable`). */
static int run_check(const lh_config_t *cfg) {
  lh_script_set_t set;
  static char out[8192];
  if (lh_script_set_read(&set, cfg->scripts, out, sizeof(out)) != 0) {
    fprintf(stderr, "luahost check: scripts rejected: %s\n", out);
    return 1;
  }
  lh_candidate_stage_t stage = lh_candidate_validate(cfg, &set, 0, NULL, out, sizeof(out));
  if (stage == LH_CANDIDATE_SCRIPTS)
    fprintf(stderr, "luahost check: scripts rejected: %s\n", out);
  else if (stage == LH_CANDIDATE_STOPPED)
    fprintf(stderr, "luahost check: %s\n", out);
  else if (stage != LH_CANDIDATE_OK)
    fprintf(stderr, "luahost check: policy tests failed:\n%s\n", out);
  else
    printf("luahost check: ok: generation %s, %s (configuration %s, scripts %s)\n", set.generation,
           out, cfg->source, cfg->scripts);
  lh_script_set_free(&set);
  return stage == LH_CANDIDATE_OK ? 0 : 1;
}

static int create_pool(const char *name, int threads, int queue, char *err, size_t errlen) {
  lh_pool_t *p;
  int rc = lh_pool_create(&p, name, (unsigned)threads, (unsigned)queue);
  if (rc == 0 && (rc = lh_pools_register(p)) != 0)
    lh_pool_destroy(p);
  if (rc != 0)
    snprintf(err, errlen, "pool %s: %s", name, lh_strerror(rc));
  return rc;
}

#define LH_ADMIN_THREADS 8

static int create_pools(const lh_config_t *cfg, char *err, size_t errlen) {
  int rc = create_pool("db", cfg->db_threads, cfg->db_queue, err, errlen);
  if (rc == 0)
    rc = create_pool("hash", cfg->hash_threads, cfg->hash_queue, err, errlen);
  /* Reloads asked over HTTP wait here, off the loops (admin.c, lua_admin.c). Each waiting caller
   * holds a thread: the callers that wait together while a reload runs are all served by the one
   * reload after it (reload.h), so there are threads enough for a burst of them. */
  if (rc == 0)
    rc = create_pool("admin", LH_ADMIN_THREADS, 16, err, errlen);
  return rc;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  const char *command = NULL;
  int check = 0, reload = 0, cmd_argc = 0;
  char **cmd_argv = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-v") == 0) {
      printf("luahost %s\n", LH_VERSION);
      return fflush(stdout) == 0 ? 0 : 1;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(lh_usage_text, stdout);
      return fflush(stdout) == 0 ? 0 : 1;
    } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "check") == 0 || strcmp(argv[i], "-t") == 0 ||
               strcmp(argv[i], "--check") == 0) {
      check = 1;
    } else if (strcmp(argv[i], "reload") == 0) {
      reload = 1;
    } else if (strcmp(argv[i], "migrate") == 0) {
      command = "migrate";
      cmd_argc = argc - i - 1;
      cmd_argv = argv + i + 1;
      break;
    } else if (strcmp(argv[i], "command") == 0 && i + 1 < argc) {
      command = argv[i + 1];
      cmd_argc = argc - i - 2;
      cmd_argv = argv + i + 2;
      break;
    } else {
      fprintf(stderr, "luahost: unknown %s '%s'\n", argv[i][0] == '-' ? "option" : "command",
              argv[i]);
      return usage();
    }
  }
  signal(SIGPIPE, SIG_IGN);
  signal(SIGUSR1, SIG_IGN); /* a log rotation during start-up: the server reopens on it later */
  signal(SIGHUP, SIG_IGN);  /* a reload asked for before the server listens is dropped, not fatal */
#ifdef LH_TEST_HOST
  /* luahost-test only: the module that lets integration tests hold pool threads. */
  lh_modules_add(&lh_test_module);
#endif
  static lh_config_t cfg;
  char err[1024] = "";
  if (lh_config_load(&cfg, config_path, err, sizeof(err)) != 0) {
    fprintf(stderr, "luahost: configuration error: %s\n", err);
    return 1;
  }
  lh_log_level_t level;
  if (lh_log_parse_level(cfg.log_level, &level) == 0)
    lh_log_set_level(level);
  if (reload)
    return lh_cli_reload(&cfg);
  /* The server's log files; `check` and the commands answer the operator on stderr. */
  if (!check && !command &&
      lh_log_open_files(cfg.access_log_path, cfg.error_log_path, err, sizeof(err)) != 0) {
    fprintf(stderr, "luahost: configuration error: %s\n", err);
    return 1;
  }

  if (command && cfg.jwt_secret[0] == '\0') {
    /* Commands sign no tokens: a throwaway secret lets them run without one configured. */
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(cfg.jwt_secret, sizeof(cfg.jwt_secret), raw, sizeof(raw));
  }
  if (check) {
    /* Everything start-up would refuse: the bindings' settings (secrets, hashing parameters, the
     * database URI) and the scripts. */
    if (lh_modules_init(&cfg, err, sizeof(err)) != 0) {
      fprintf(stderr, "luahost: configuration error: %s\n", err);
      return 1;
    }
    lh_modules_cleanup();
    lh_pools_destroy_all(); /* pools a module's init created */
    return run_check(&cfg);
  }

  int rc = lh_modules_init(&cfg, err, sizeof(err));
  if (rc == 0)
    rc = create_pools(&cfg, err, sizeof(err));
  if (rc != 0) {
    lh_error("start-up failed: %s", err);
    lh_pools_destroy_all();
    lh_modules_cleanup();
    return 1;
  }
  if (command) {
    int code = run_command(&cfg, command, cmd_argc, cmd_argv);
    lh_modules_cleanup();
    return code;
  }
  static lh_server_t srv;
  rc = lh_server_start(&srv, &cfg, config_path, err, sizeof(err));
  if (rc != 0) {
    lh_error("start-up failed: %s", err);
    lh_pools_destroy_all();
    lh_modules_cleanup();
    return 1;
  }
  int code = lh_server_run(&srv);
  lh_pools_destroy_all();
  lh_server_cleanup(&srv);
  lh_modules_cleanup();
  return code;
}
