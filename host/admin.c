/* admin.c: the admin listener's reload endpoint (see admin.h). */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "reload.h"
#include "response.h"

int lh_admin_is_reload(const char *path, size_t len) {
  static const char p[] = "/admin/reload";
  size_t n = sizeof(p) - 1;
  return (len == n || (len == n + 1 && path[n] == '/')) && memcmp(path, p, n) == 0;
}

static void answer(lh_exchange_t *ex, int status, int ok, const char *message, const lh_buf_t *st) {
  ex->status = status;
  lh_buf_reset(&ex->body);
  if (st->failed) {
    const lh_error_kind_t *k = lh_error_kind("out_of_memory");
    ex->status = k->status;
    lh_error_kind_write(k, &ex->body, &ex->headers);
    return;
  }
  lh_envelope(&ex->body, ok, message, st->data, st->len);
}

static void answer_kind(lh_exchange_t *ex, const char *kind) {
  const lh_error_kind_t *k = lh_error_kind(kind);
  ex->status = k->status;
  lh_buf_reset(&ex->body);
  lh_error_kind_write(k, &ex->body, &ex->headers);
}

typedef struct {
  lh_job_t job;
  lh_worker_t *w;
  lh_exchange_t *ex;
  int ok;
  lh_buf_t status;
} lh_admin_job_t;

static void reload_work(lh_job_t *job) {
  lh_admin_job_t *j = LH_CONTAINER_OF(job, lh_admin_job_t, job);
  lh_reloader_t *r = lh_reloader_global();
  j->ok = r ? lh_reload_run(r, "api", &j->status) : 0;
}

static void reload_done(lh_job_t *job) {
  lh_admin_job_t *j = LH_CONTAINER_OF(job, lh_admin_job_t, job);
  lh_exchange_t *ex = j->ex;
  if (job->cancelled || j->ok < 0 || j->status.len == 0 || !lh_reloader_global()) {
    answer_kind(ex, "draining");
  } else if (j->ok) {
    answer(ex, 200, 1, "Reloaded: the new generation is live", &j->status);
  } else {
    answer(ex, 422, 0, "Reload rejected: the live generation keeps serving", &j->status);
  }
  lh_worker_t *w = j->w;
  lh_buf_free(&j->status);
  free(j);
  ex->done(ex);
  w->admin_jobs--;
  lh_worker_check_stopped(w); /* a stopping worker waited for this job */
}

void lh_admin_reload(lh_worker_t *w, lh_exchange_t *ex, int method) {
  lh_reloader_t *r = lh_reloader_global();
  if (!r || atomic_load(&w->srv->draining)) {
    /* No reloader and not draining: the other workers are still being started, and the
     * reloader after them (server.c); a moment later it answers. */
    answer_kind(ex, atomic_load(&w->srv->draining) ? "draining" : "starting");
    ex->done(ex);
    return;
  }
  if (method != LH_M_POST) {
    lh_buf_t st;
    lh_buf_init(&st);
    lh_reload_status(r, &st);
    answer(ex, 200, 1, "Reload status", &st);
    lh_buf_free(&st);
    ex->done(ex);
    return;
  }
  lh_admin_job_t *j = calloc(1, sizeof(*j));
  lh_pool_t *pool = lh_pools_find("admin");
  int rc = j && pool ? 0 : LH_ENOMEM;
  if (rc == 0) {
    j->w = w;
    j->ex = ex;
    lh_buf_init(&j->status);
    j->job.work = reload_work;
    j->job.done = reload_done;
    rc = lh_pool_submit(pool, &j->job, w->cq);
    if (rc == 0)
      w->admin_jobs++; /* the worker does not finish (and close its queue) before the job is done */
  }
  if (rc != 0) {
    free(j);
    answer_kind(ex, rc == LH_EBUSY ? "overloaded" : "draining");
    ex->done(ex);
  }
}
