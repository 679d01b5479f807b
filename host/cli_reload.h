/* cli_reload.h: `luahost reload`: asks the running host for a reload over its admin listener
 * (POST /admin/reload, with the admin token when one is configured), prints the answer's JSON
 * to stdout and returns the exit code: 0 when the new generation is live, 1 otherwise (rejected,
 * no host listening, admin listener off), like `nginx -s reload`. */
#ifndef LH_CLI_RELOAD_H
#define LH_CLI_RELOAD_H

#include "config.h"

int lh_cli_reload(const lh_config_t *cfg);

#endif
