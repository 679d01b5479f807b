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
                                           int start_hooks, char *out, size_t outlen) {
  uv_loop_t loop;
  lh_cq_t *cq = NULL;
  lh_vm_t *vm = NULL;
  lh_candidate_stage_t stage = LH_CANDIDATE_SCRIPTS;
  out[0] = '\0';
  if (uv_loop_init(&loop) != 0) {
    snprintf(out, outlen, "cannot create a loop");
    return stage;
  }
  if (lh_cq_create(&cq, &loop) != 0) {
    snprintf(out, outlen, "cannot create a completion queue");
  } else if (lh_vm_create_from(&vm, cfg, set, &loop, cq, out, outlen) != 0) {
    /* The loader's message names the file and line; the host's frames after it do not help. */
    char *tb = strstr(out, "\nstack traceback:");
    if (tb)
      *tb = '\0';
  } else {
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
  }
  if (cq)
    lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT); /* the queue's close callback */
  lh_vm_free(vm);
  uv_loop_close(&loop);
  return stage;
}
