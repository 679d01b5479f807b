/* candidate.h: the validation of one generation, the same for `luahost check` (main.c) and every
 * reload (reload.c): on a loop and a Lua state of its own, the scripts of a snapshot load (every
 * file compiles, the loader's checks, the C router's), their policy tests pass, and, for a reload,
 * the generation's on_start hooks succeed (docs/operations.md, "What is validated"). */
#ifndef LH_CANDIDATE_H
#define LH_CANDIDATE_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "script_set.h"

/* Where a candidate failed. */
typedef enum {
  LH_CANDIDATE_OK = 0,
  LH_CANDIDATE_SCRIPTS, /* a script or the loader refused it: "file:line: message" */
  LH_CANDIDATE_TESTS,   /* policy tests failed: one line per failure and a count */
  LH_CANDIDATE_HOOKS,   /* an on_start hook failed: its message */
  LH_CANDIDATE_STOPPED  /* cancelled (the host stopping) or past its deadline */
} lh_candidate_stage_t;

/* Lets another thread stop a running validation (the host stopping): its waits are cancelled
 * (vm.h lh_vm_cancel), so its hooks fail soon and the candidate is rejected; a validation started
 * after lh_candidate_cancel is rejected at once. */
typedef struct {
  uv_mutex_t mu;
  uv_async_t *async; /* the running validation's, or NULL */
  int cancelled;
} lh_candidate_cancel_t;
void lh_candidate_cancel_init(lh_candidate_cancel_t *c);
void lh_candidate_cancel_destroy(lh_candidate_cancel_t *c);
void lh_candidate_cancel(lh_candidate_cancel_t *c);   /* any thread */
int lh_candidate_cancelled(lh_candidate_cancel_t *c); /* 1 once lh_candidate_cancel ran */

/* A validation that takes longer (an on_start hook waiting for ever) is stopped the same way and
 * rejected: "timed out after N s". */
#define LH_CANDIDATE_DEADLINE_MS 60000

/* Validates set under cfg. Returns LH_CANDIDATE_OK with the policy tests' one-line summary in
 * out ("9 routes, 4 policies, 37 policy tests passed"), or the stage that failed with its
 * message in out (the loader's traceback cut: the message names file and line). With
 * start_hooks, the on_start hooks run after the tests (they may use the database: the pools must
 * exist; without them a database call answers `unavailable`). */
lh_candidate_stage_t lh_candidate_validate(const lh_config_t *cfg, const lh_script_set_t *set,
                                           int start_hooks, lh_candidate_cancel_t *cancel,
                                           char *out, size_t outlen);

#endif
