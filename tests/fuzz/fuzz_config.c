/* libFuzzer target: the configuration loader (host/config.c). The input is a configuration file;
 * loading it either succeeds with every value inside its documented range or fails with a message,
 * and never hangs (the file runs under an instruction budget) or crashes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (!path[0]) {
    snprintf(path, sizeof(path), "/tmp/lh-fuzz-config-%d.conf", (int)getpid());
    /* Only the file decides: no LUAHOST_* from the environment. */
    extern char **environ;
    for (char **e = environ; *e; e++)
      if (strncmp(*e, "LUAHOST_", 8) == 0) {
        fprintf(stderr, "fuzz_config: unset LUAHOST_* variables first\n");
        abort();
      }
  }
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  fwrite(data, 1, size, f);
  fclose(f);
  static lh_config_t cfg;
  char err[512] = "";
  int rc = lh_config_load(&cfg, path, err, sizeof(err));
  if (rc != 0 && err[0] == '\0') {
    fprintf(stderr, "fuzz_config: a failed load gave no message\n");
    abort();
  }
  if (rc == 0 && (cfg.workers < 0 || cfg.script_budget_ms < 1 || cfg.db_threads < 1)) {
    fprintf(stderr, "fuzz_config: a value outside its range was accepted\n");
    abort();
  }
  return 0;
}
