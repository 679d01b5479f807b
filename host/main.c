/* main.c: command line, start-up order and exit codes.
 *   luahost [--config FILE]          run the server
 *   luahost --check [--config FILE]  load the configuration and scripts, report, exit
 * Start-up order: configuration, logging, native bindings (secrets, hashing, database pool), job
 * pools, then the workers. Anything wrong stops the start with a message naming the cause. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "jobs.h"
#include "lh.h"
#include "log.h"
#include "register.h"
#include "server.h"
#include "vm.h"

static int usage(void) {
  fprintf(stderr, "usage: luahost [--config FILE] [--check]\n");
  return 2;
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

static int create_pools(const lh_config_t *cfg, char *err, size_t errlen) {
  int rc = create_pool("db", cfg->db_threads, cfg->db_queue, err, errlen);
  if (rc == 0)
    rc = create_pool("hash", cfg->hash_threads, cfg->hash_queue, err, errlen);
  if (rc == 0 && cfg->test_pool_threads > 0)
    rc = create_pool("test", cfg->test_pool_threads,
                     cfg->test_pool_queue > 0 ? cfg->test_pool_queue : 1, err, errlen);
  return rc;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  int check = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      config_path = argv[++i];
    else if (strcmp(argv[i], "--check") == 0)
      check = 1;
    else
      return usage();
  }
  signal(SIGPIPE, SIG_IGN);
  static lh_config_t cfg;
  char err[1024] = "";
  if (lh_config_load(&cfg, config_path, err, sizeof(err)) != 0) {
    fprintf(stderr, "luahost: configuration error: %s\n", err);
    return 1;
  }
  lh_log_level_t level;
  if (lh_log_parse_level(cfg.log_level, &level) == 0)
    lh_log_set_level(level);

  if (check) {
    lh_vm_t *vm;
    if (lh_vm_create(&vm, &cfg, NULL, NULL, err, sizeof(err)) != 0) {
      fprintf(stderr, "luahost: scripts rejected: %s\n", err);
      return 1;
    }
    printf("configuration %s and scripts in %s are valid (generation %s)\n", cfg.source,
           cfg.scripts, lh_vm_generation(vm));
    lh_vm_free(vm);
    return 0;
  }

  int rc = lh_bindings_init(&cfg, err, sizeof(err));
  if (rc == 0)
    rc = create_pools(&cfg, err, sizeof(err));
  if (rc != 0) {
    lh_error("start-up failed: %s", err);
    lh_pools_destroy_all();
    lh_bindings_cleanup();
    return 1;
  }
  static lh_server_t srv;
  rc = lh_server_start(&srv, &cfg, err, sizeof(err));
  if (rc != 0) {
    lh_error("start-up failed: %s", err);
    lh_pools_destroy_all();
    lh_bindings_cleanup();
    return 1;
  }
  int code = lh_server_run(&srv);
  lh_pools_destroy_all();
  lh_bindings_cleanup();
  return code;
}
