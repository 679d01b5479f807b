/* reload.h: live reload of the scripts and the reloadable configuration (docs/operations.md,
 * "Live reload").
 *
 * One reload thread per process builds every generation after the first: it reads the script tree
 * once (a snapshot), re-reads the configuration (and the secrets it names by file), validates the
 * candidate on a Lua state of its own (every file compiles, the loader's checks, the routes, the
 * policy tests, then the generation's on_start hooks), prepares one VM per worker from that same
 * snapshot, and only when all of that succeeded commits: each worker swaps its VM on its own loop
 * (server.c), so requests already running finish on the generation they started on. A failure at
 * any step frees everything the candidate built and changes nothing that is served.
 *
 * Triggers: lh_reload_request (SIGHUP, the file watcher: fire and forget) and lh_reload_run
 * (blocking: the admin endpoints, from a pool thread). Requests that arrive while a reload runs
 * are served by one more reload after it, so every caller's change is seen; a caller of
 * lh_reload_run gets the outcome of a reload that started after its call. */
#ifndef LH_RELOAD_H
#define LH_RELOAD_H

#include <stddef.h>

#include "buf.h"
#include "config.h"
#include "script_set.h"

struct lh_server_s;
typedef struct lh_reloader_s lh_reloader_t;

/* A generation's configuration, shared by the VMs built from it (one per worker, and while
 * requests drain, retired ones): freed when the last reference goes. */
typedef struct lh_gen_s lh_gen_t;
lh_gen_t *lh_gen_new(const lh_config_t *cfg);
const lh_config_t *lh_gen_config(const lh_gen_t *g);
void lh_gen_ref(lh_gen_t *g);
void lh_gen_unref(lh_gen_t *g);

/* Starts the reload thread, with the file watcher on its loop (every directory under the scripts
 * directory). config_path: what lh_config_load was given at start
 * (NULL: the default search). `live` is the generation the workers started with and its id. */
int lh_reloader_start(lh_reloader_t **out, struct lh_server_s *srv, const char *config_path,
                      lh_gen_t *live, const char *live_id, char *err, size_t errlen);
/* Stops the watcher and the reload thread (a reload in progress finishes first); from then on a
 * request is answered "not live" at once. Main thread. */
void lh_reloader_stop(lh_reloader_t *r);
/* The live generation's configuration once lh_reloader_stop returned (no reload can change it
 * any more): what the shutdown applies (drain_delay_ms, shutdown_grace_ms are reloadable). NULL
 * before the stop, or for NULL. Main thread. */
const lh_config_t *lh_reloader_final_config(lh_reloader_t *r);
/* Frees it, once nothing can call it any more (the pools are gone). */
void lh_reloader_free(lh_reloader_t *r);

/* Asks for a reload and returns at once; trigger names it in the history ("signal", "watch"). */
void lh_reload_request(lh_reloader_t *r, const char *trigger);
/* Asks for a reload and waits for its outcome; writes the status (as lh_reload_status) into out.
 * Every reload builds and commits a whole generation, even of an unchanged tree (the secrets its
 * configuration names by file may have changed). Returns 1 when the candidate went live, 0 when
 * it was rejected, -1 when the host began stopping before that reload ran (none will: answer
 * "shutting down", not "rejected"). Never call from a loop thread: it blocks for as long as the
 * reload takes.
 */
int lh_reload_run(lh_reloader_t *r, const char *trigger, lh_buf_t *out);
/* The status as JSON: {"generation", "live_since", "reloads": {"ok", "failed"}, "last_error",
 * "restart_required": [...], "history": [{"at", "trigger", "result", "generation", "error",
 * "duration_ms"}, ...]} (newest first). Safe from any thread. */
void lh_reload_status(lh_reloader_t *r, lh_buf_t *out);
/* The live generation's id (16 hex digits) into out (17 bytes). */
void lh_reload_live_id(lh_reloader_t *r, char out[17]);
/* Counters for /metrics. */
void lh_reload_counts(lh_reloader_t *r, unsigned long long *ok, unsigned long long *failed);

/* 1 on the reload thread (where candidates are validated): luahost.admin.reload answers
 * "unavailable" there instead of waiting for the reload it runs in. */
int lh_reload_on_this_thread(void);
/* The process's reloader, for the Lua API luahost.admin (NULL when no server runs: `check`). */
lh_reloader_t *lh_reloader_global(void);

#endif
