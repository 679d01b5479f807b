/* readiness.c: the readiness checks and worker 0's prober (see readiness.h). */
#include "readiness.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "log.h"

typedef struct {
  char name[32];
  char pool[32];
  lh_ready_fn fn;
  void *ud;
  const char *message, *code;
  atomic_int ok;
  int in_flight; /* worker 0's loop only */
} lh_ready_check_t;

static lh_ready_check_t g_checks[LH_READY_MAX_CHECKS];
static int g_nchecks;

static lh_ready_check_t *find(const char *name) {
  for (int i = 0; i < g_nchecks; i++)
    if (strcmp(g_checks[i].name, name) == 0)
      return &g_checks[i];
  return NULL;
}

int lh_ready_register(const char *name, const char *pool, lh_ready_fn fn, void *ud,
                      const char *message, const char *code) {
  if (!name || !pool || !fn || !message || !code || strlen(name) >= sizeof(g_checks[0].name) ||
      strlen(pool) >= sizeof(g_checks[0].pool))
    return LH_EINVAL;
  if (find(name))
    return LH_EEXIST;
  if (g_nchecks == LH_READY_MAX_CHECKS)
    return LH_ELIMIT;
  lh_ready_check_t *c = &g_checks[g_nchecks++];
  memset(c, 0, sizeof(*c));
  strcpy(c->name, name);
  strcpy(c->pool, pool);
  c->fn = fn;
  c->ud = ud;
  c->message = message;
  c->code = code;
  atomic_store(&c->ok, 0);
  return 0;
}

int lh_ready_unregister(const char *name) {
  for (int i = 0; i < g_nchecks; i++) {
    if (strcmp(g_checks[i].name, name) == 0) {
      for (int k = i; k + 1 < g_nchecks; k++) {
        memcpy(&g_checks[k], &g_checks[k + 1], sizeof(g_checks[k]));
        atomic_store(&g_checks[k].ok, atomic_load(&g_checks[k + 1].ok));
      }
      g_nchecks--;
      return 0;
    }
  }
  return LH_ENOTFOUND;
}

int lh_ready_ok(const char **message, const char **code) {
  for (int i = 0; i < g_nchecks; i++) {
    if (!atomic_load(&g_checks[i].ok)) {
      *message = g_checks[i].message;
      *code = g_checks[i].code;
      return 0;
    }
  }
  return 1;
}

int lh_ready_state(const char *name) {
  const lh_ready_check_t *c = find(name);
  return c ? atomic_load(&c->ok) != 0 : LH_ENOTFOUND;
}

/* ---- the prober ---- */

/* A job carries what it runs, not a pointer into the registry: a check unregistered while its job
 * is in flight is then simply not published. */
typedef struct {
  lh_job_t job;
  char name[32];
  lh_ready_fn fn;
  void *ud;
  lh_ready_prober_t *prober;
  int rc;
} lh_ready_job_t;

static void check_work(lh_job_t *job) {
  lh_ready_job_t *j = LH_CONTAINER_OF(job, lh_ready_job_t, job);
  j->rc = j->fn(j->ud);
}

static void publish(lh_ready_check_t *c, int ok) {
  if (atomic_exchange(&c->ok, ok) != ok)
    lh_log(ok ? LH_LOG_INFO : LH_LOG_WARN, "readiness check %s: %s", c->name,
           ok ? "passes" : c->message);
}

static void check_done(lh_job_t *job) {
  lh_ready_job_t *j = LH_CONTAINER_OF(job, lh_ready_job_t, job);
  lh_ready_check_t *c = find(j->name);
  if (c) {
    publish(c, !job->cancelled && j->rc == 0);
    c->in_flight = 0;
  }
  lh_ready_prober_t *p = j->prober;
  free(j);
  if (--p->running == 0 && p->on_idle)
    p->on_idle(p->ud);
}

static void on_probe(uv_timer_t *t) {
  lh_ready_prober_t *p = t->data;
  if (p->stopped)
    return;
  for (int i = 0; i < g_nchecks; i++) {
    lh_ready_check_t *c = &g_checks[i];
    lh_pool_t *pool = lh_pools_find(c->pool);
    if (c->in_flight || !pool)
      continue;
    lh_ready_job_t *j = calloc(1, sizeof(*j));
    if (!j)
      return;
    memcpy(j->name, c->name, sizeof(j->name));
    j->fn = c->fn;
    j->ud = c->ud;
    j->prober = p;
    j->job.work = check_work;
    j->job.done = check_done;
    int rc = lh_pool_submit(pool, &j->job, p->cq);
    if (rc != 0) {
      free(j);
      /* A full queue (peak load) says nothing about the service: keep the last outcome, or every
       * host would turn not-ready together exactly when it is busiest. A closed pool fails. */
      if (rc != LH_EBUSY)
        publish(c, 0);
      continue;
    }
    c->in_flight = 1;
    p->running++;
  }
}

void lh_ready_prober_init(lh_ready_prober_t *p, uv_loop_t *loop, lh_cq_t *cq,
                          void (*on_idle)(void *ud), void *ud) {
  memset(p, 0, sizeof(*p));
  p->on_idle = on_idle;
  p->ud = ud;
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  p->cq = cq;
}

void lh_ready_prober_start(lh_ready_prober_t *p, uint64_t interval_ms) {
  uv_timer_start(&p->timer, on_probe, 0, interval_ms);
}

void lh_ready_prober_stop(lh_ready_prober_t *p) {
  p->stopped = 1;
  uv_timer_stop(&p->timer);
}

int lh_ready_prober_busy(const lh_ready_prober_t *p) {
  return p->running;
}

static void on_closed(uv_handle_t *h) {
  (void)h;
}

void lh_ready_prober_close(lh_ready_prober_t *p) {
  lh_ready_prober_stop(p);
  if (!uv_is_closing((uv_handle_t *)&p->timer))
    uv_close((uv_handle_t *)&p->timer, on_closed);
}
