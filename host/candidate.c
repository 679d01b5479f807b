/* candidate.c: validating one generation (see candidate.h). */
#include "candidate.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "jobs.h"
#include "vm.h"

typedef struct {
  int done, ok;
  char *out;
  size_t outlen;
} lh_step_t;

void lh_candidate_cancel_init(lh_candidate_cancel_t *c) {
  uv_mutex_init(&c->mu);
  c->async = NULL;
  c->cancelled = 0;
}

void lh_candidate_cancel_destroy(lh_candidate_cancel_t *c) {
  uv_mutex_destroy(&c->mu);
}

void lh_candidate_cancel(lh_candidate_cancel_t *c) {
  uv_mutex_lock(&c->mu);
  c->cancelled = 1;
  if (c->async)
    uv_async_send(c->async); /* under the lock: the validation clears it before closing it */
  uv_mutex_unlock(&c->mu);
}

int lh_candidate_cancelled(lh_candidate_cancel_t *c) {
  uv_mutex_lock(&c->mu);
  int cancelled = c->cancelled;
  uv_mutex_unlock(&c->mu);
  return cancelled;
}

/* What stops a validation: a cancel from another thread, or the deadline. */
typedef struct {
  uv_async_t async;
  uv_timer_t deadline;
  lh_vm_t *vm;
  const char *why; /* NULL while it runs on */
  char timed_out[64];
} lh_stopper_t;

static void stop_now(lh_stopper_t *s, const char *why) {
  if (s->why)
    return;
  s->why = why;
  if (s->vm)
    lh_vm_cancel(s->vm); /* sleeps wake (and later ones fail); jobs end within db_timeout_ms */
}

static void on_cancel(uv_async_t *a) {
  stop_now(a->data, "the host is stopping");
}

static void on_deadline(uv_timer_t *t) {
  lh_stopper_t *s = t->data;
  snprintf(s->timed_out, sizeof(s->timed_out), "timed out after %d s",
           LH_CANDIDATE_DEADLINE_MS / 1000);
  stop_now(s, s->timed_out);
}

static void on_step_done(void *ud, int ok, const char *text) {
  lh_step_t *s = ud;
  s->done = 1;
  s->ok = ok;
  snprintf(s->out, s->outlen, "%s", text ? text : "");
}

/* Runs the loop until the step's callback ran (a policy test or a hook may sleep or wait for a
 * pool job, which completes on this loop's queue). */
static void run_until_done(uv_loop_t *loop, lh_step_t *s) {
  while (!s->done && uv_run(loop, UV_RUN_ONCE))
    ;
}

lh_candidate_stage_t lh_candidate_validate(const lh_config_t *cfg, const lh_script_set_t *set,
                                           int start_hooks, lh_candidate_cancel_t *cancel,
                                           char *out, size_t outlen) {
  uv_loop_t loop;
  lh_cq_t *cq = NULL;
  lh_vm_t *vm = NULL;
  lh_candidate_stage_t stage = LH_CANDIDATE_SCRIPTS;
  out[0] = '\0';
  if (uv_loop_init(&loop) != 0) {
    snprintf(out, outlen, "cannot create a loop");
    return stage;
  }
  lh_stopper_t stopper = {.vm = NULL, .why = NULL, .timed_out = ""};
  if (uv_async_init(&loop, &stopper.async, on_cancel) != 0) { /* an eventfd: EMFILE is possible */
    snprintf(out, outlen, "cannot create the validation's wake-up: too many open files?");
    uv_loop_close(&loop);
    return stage;
  }
  uv_timer_init(&loop, &stopper.deadline); /* cannot fail on a live loop */
  stopper.async.data = stopper.deadline.data = &stopper;
  uv_timer_start(&stopper.deadline, on_deadline, LH_CANDIDATE_DEADLINE_MS, 0);
  if (cancel) {
    uv_mutex_lock(&cancel->mu);
    if (cancel->cancelled)
      stopper.why = "the host is stopping";
    else
      cancel->async = &stopper.async;
    uv_mutex_unlock(&cancel->mu);
  }
  if (stopper.why) {
    snprintf(out, outlen, "%s", stopper.why);
    stage = LH_CANDIDATE_STOPPED;
  } else if (lh_cq_create(&cq, &loop) != 0) {
    snprintf(out, outlen, "cannot create a completion queue");
  } else if (lh_vm_create_from(&vm, cfg, set, &loop, cq, out, outlen) != 0) {
    /* The loader's message names the file and line; the host's frames after it do not help. */
    char *tb = strstr(out, "\nstack traceback:");
    if (tb)
      *tb = '\0';
  } else {
    stopper.vm = vm;
    lh_step_t tests = {0, 0, out, outlen};
    lh_vm_run_policy_tests(vm, on_step_done, &tests);
    run_until_done(&loop, &tests);
    stage = LH_CANDIDATE_TESTS;
    if (!tests.done)
      snprintf(out, outlen, "the policy tests did not finish");
    else if (tests.ok)
      stage = LH_CANDIDATE_OK;
    if (stage == LH_CANDIDATE_OK && start_hooks && lh_vm_has_start_hooks(vm)) {
      char summary[512];
      snprintf(summary, sizeof(summary), "%s", out);
      lh_step_t hooks = {0, 0, out, outlen};
      lh_vm_run_hook(vm, NULL, 0, NULL, on_step_done, &hooks);
      run_until_done(&loop, &hooks);
      if (!hooks.done || !hooks.ok) {
        stage = LH_CANDIDATE_HOOKS;
        if (!hooks.done)
          snprintf(out, outlen, "the on_start hooks did not finish");
      } else {
        snprintf(out, outlen, "%s", summary);
      }
    }
    if (stopper.why) {
      stage = LH_CANDIDATE_STOPPED; /* whatever passed, this candidate does not go live */
      char detail[512];
      snprintf(detail, sizeof(detail), "%s", out);
      snprintf(out, outlen, "validation stopped (%s)%s%s", stopper.why, detail[0] ? ": " : "",
               detail);
    }
  }
  if (cancel) {
    uv_mutex_lock(&cancel->mu);
    cancel->async = NULL;
    uv_mutex_unlock(&cancel->mu);
  }
  uv_close((uv_handle_t *)&stopper.async, NULL);
  uv_close((uv_handle_t *)&stopper.deadline, NULL);
  if (cq)
    lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT); /* the queue's close callback */
  lh_vm_free(vm);
  uv_loop_close(&loop);
  return stage;
}
