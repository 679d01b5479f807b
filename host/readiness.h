/* readiness.h: what /readyz waits for besides the host's own start-up. A binding registers a
 * check (the mongo binding: a ping) once per process, before the workers start; worker 0 runs
 * every check each LH_READY_PROBE_MS on the pool the check names, never on a loop, and publishes
 * the outcome in an atomic flag that /readyz only reads. The host itself knows no check by name. */
#ifndef LH_READINESS_H
#define LH_READINESS_H

#include <uv.h>

#include "jobs.h"

#define LH_READY_MAX_CHECKS 8
#define LH_READY_PROBE_MS 2000

/* Runs on a pool thread: 0 when the dependency answers, a negative LH_E* code when it does not. */
typedef int (*lh_ready_fn)(void *ud);

/* Registers a check run on pool `pool`; until it passes once, /readyz answers 503 with message
 * and code (static strings). LH_EEXIST for a name already registered, LH_ELIMIT past
 * LH_READY_MAX_CHECKS. Not thread-safe: call before the workers start. */
int lh_ready_register(const char *name, const char *pool, lh_ready_fn fn, void *ud,
                      const char *message, const char *code);
/* Removes a check (its binding's tear-down); LH_ENOTFOUND when none has that name. */
int lh_ready_unregister(const char *name);
/* 1 when every check passed its last run; else 0 with the first failing check's message and
 * code. Any thread. */
int lh_ready_ok(const char **message, const char **code);

/* The named check's last outcome: 1 passed, 0 failed or not run yet, LH_ENOTFOUND when no check
 * has that name (metrics). Any thread. */
int lh_ready_state(const char *name);

/* Worker 0's prober: a timer on its loop and the jobs in flight. */
typedef struct {
  uv_timer_t timer;
  lh_cq_t *cq;
  int running; /* jobs submitted and not yet done */
  int stopped;
  void (*on_idle)(void *ud); /* called when the last job in flight is done */
  void *ud;
} lh_ready_prober_t;

/* on_idle (may be NULL) runs on the loop each time `running` drops to 0: shutdown waits for the
 * jobs in flight, since they post to this loop's completion queue. */
void lh_ready_prober_init(lh_ready_prober_t *p, uv_loop_t *loop, lh_cq_t *cq,
                          void (*on_idle)(void *ud), void *ud);
/* Runs the checks now and then every interval_ms. */
void lh_ready_prober_start(lh_ready_prober_t *p, uint64_t interval_ms);
/* No new runs; jobs in flight still complete (lh_ready_prober_busy says how many). */
void lh_ready_prober_stop(lh_ready_prober_t *p);
int lh_ready_prober_busy(const lh_ready_prober_t *p);
/* Closes the timer handle (after stop). */
void lh_ready_prober_close(lh_ready_prober_t *p);

#endif
