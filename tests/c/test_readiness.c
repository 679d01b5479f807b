/* test_readiness.c: unit tests for host/readiness.c: registering checks (names, limits), the
 * published outcome, and worker 0's prober running checks on a pool thread and publishing what
 * they return, including a check whose pool is missing and one that flips. */
#include "jobs.h"
#include "lh.h"
#include "lh_test.h"
#include "readiness.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static atomic_int g_answer = LH_EIO;
static atomic_int g_runs;
static uv_thread_t g_main;

static int check(void *ud) {
  LH_CHECK(ud == &g_answer);
  uv_thread_t self = uv_thread_self();
  LH_CHECK(!uv_thread_equal(&self, &g_main)); /* never on the loop's thread */
  atomic_fetch_add(&g_runs, 1);
  return atomic_load(&g_answer);
}

static int always_ok(void *ud) {
  (void)ud;
  return 0;
}

static void test_register(void) {
  const char *m = NULL, *c = NULL;
  LH_CHECK_INT(lh_ready_ok(&m, &c), 1); /* nothing registered: ready */
  LH_CHECK_INT(lh_ready_register("a", "p", always_ok, NULL, "A is down", "a_down"), 0);
  LH_CHECK_INT(lh_ready_register("a", "p", always_ok, NULL, "x", "y"), LH_EEXIST);
  LH_CHECK_INT(lh_ready_register(NULL, "p", always_ok, NULL, "x", "y"), LH_EINVAL);
  LH_CHECK_INT(lh_ready_register("b", "p", NULL, NULL, "x", "y"), LH_EINVAL);
  char names[LH_READY_MAX_CHECKS][8];
  int added = 0;
  for (int i = 0; i < LH_READY_MAX_CHECKS; i++) {
    snprintf(names[i], sizeof names[i], "n%d", i);
    if (lh_ready_register(names[i], "p", always_ok, NULL, "x", "y") == 0)
      added++;
  }
  LH_CHECK_INT(added, LH_READY_MAX_CHECKS - 1);
  LH_CHECK_INT(lh_ready_register("full", "p", always_ok, NULL, "x", "y"), LH_ELIMIT);
  /* A check that never ran counts as failing, with its own message. */
  LH_CHECK_INT(lh_ready_ok(&m, &c), 0);
  LH_CHECK_STR(m, "A is down");
  LH_CHECK_STR(c, "a_down");
  LH_CHECK_INT(lh_ready_unregister("a"), 0);
  for (int i = 0; i < LH_READY_MAX_CHECKS; i++)
    lh_ready_unregister(names[i]);
  LH_CHECK_INT(lh_ready_unregister("a"), LH_ENOTFOUND);
  LH_CHECK_INT(lh_ready_ok(&m, &c), 1);
}

/* Runs the loop until cond() or ms pass. */
static void run_until(uv_loop_t *loop, int (*cond)(void), int ms) {
  for (int i = 0; i < ms && !cond(); i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static int ready_now(void) {
  const char *m, *c;
  return lh_ready_ok(&m, &c);
}

static int not_ready_now(void) {
  return !ready_now();
}

static int ran_twice(void) {
  return atomic_load(&g_runs) >= 2;
}

static int idle_calls;
static void count_idle(void *ud) {
  (*(int *)ud)++;
}

static void test_prober(void) {
  g_main = uv_thread_self();
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_pool_create(&pool, "readypool", 1, 4), 0);
  LH_CHECK_INT(lh_pools_register(pool), 0);
  LH_CHECK_INT(lh_ready_register("svc", "readypool", check, &g_answer, "Svc is down", "svc_down"),
               0);
  LH_CHECK_INT(lh_ready_register("ghost", "nosuchpool", always_ok, NULL, "Ghost", "ghost"), 0);
  lh_ready_prober_t p;
  lh_ready_prober_init(&p, &loop, cq, count_idle, &idle_calls);
  lh_ready_prober_start(&p, 20);
  /* The check fails: not ready, and the prober keeps asking. */
  run_until(&loop, ran_twice, 2000);
  LH_CHECK(atomic_load(&g_runs) >= 2);
  const char *m, *c;
  LH_CHECK_INT(lh_ready_ok(&m, &c), 0);
  /* A check whose pool does not exist never runs: it stays failing, behind svc. */
  LH_CHECK_INT(lh_ready_unregister("svc"), 0);
  LH_CHECK_INT(lh_ready_ok(&m, &c), 0);
  LH_CHECK_STR(c, "ghost");
  LH_CHECK_INT(lh_ready_unregister("ghost"), 0);
  LH_CHECK_INT(lh_ready_register("svc", "readypool", check, &g_answer, "Svc is down", "svc_down"),
               0);
  /* It passes: ready; it fails again: not ready. */
  atomic_store(&g_answer, 0);
  run_until(&loop, ready_now, 2000);
  LH_CHECK_INT(ready_now(), 1);
  atomic_store(&g_answer, LH_EIO);
  run_until(&loop, not_ready_now, 2000);
  LH_CHECK_INT(ready_now(), 0);
  /* Stopped: no new runs; jobs in flight finish before the loop ends. */
  lh_ready_prober_stop(&p);
  for (int i = 0; i < 2000 && lh_ready_prober_busy(&p); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(lh_ready_prober_busy(&p), 0);
  /* Every time the jobs in flight drained, the prober said so (shutdown waits on that). */
  LH_CHECK(idle_calls >= 2);
  int runs = atomic_load(&g_runs);
  for (int i = 0; i < 60; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(atomic_load(&g_runs), runs);
  lh_ready_prober_close(&p);
  lh_ready_unregister("svc");
  lh_pools_destroy_all();
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static atomic_int g_release;
static atomic_int g_started;

static int slow_check(void *ud) {
  (void)ud;
  atomic_store(&g_started, 1);
  while (!atomic_load(&g_release))
    usleep(1000);
  return 0;
}

static int slow_job_started(void) {
  return atomic_load(&g_started);
}

/* A check unregistered while its job runs: the job's outcome goes nowhere, in particular not to
 * the check registered after it. */
static void test_unregister_in_flight(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_pool_create(&pool, "slowpool", 1, 4), 0);
  LH_CHECK_INT(lh_pools_register(pool), 0);
  LH_CHECK_INT(lh_ready_register("slow", "slowpool", slow_check, NULL, "Slow", "slow"), 0);
  lh_ready_prober_t p;
  lh_ready_prober_init(&p, &loop, cq, NULL, NULL);
  lh_ready_prober_start(&p, 1000);
  run_until(&loop, slow_job_started, 2000);
  LH_CHECK_INT(lh_ready_prober_busy(&p), 1);
  LH_CHECK_INT(lh_ready_unregister("slow"), 0);
  LH_CHECK_INT(lh_ready_register("late", "nosuchpool", always_ok, NULL, "Late", "late"), 0);
  atomic_store(&g_release, 1);
  for (int i = 0; i < 2000 && lh_ready_prober_busy(&p); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  const char *m, *c;
  LH_CHECK_INT(lh_ready_ok(&m, &c), 0);
  LH_CHECK_STR(c, "late");
  lh_ready_prober_close(&p);
  lh_ready_unregister("late");
  lh_pools_destroy_all();
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static atomic_int g_unblock;
static atomic_int g_blocked_done;

static void block_work(lh_job_t *job) {
  (void)job;
  while (!atomic_load(&g_unblock))
    usleep(1000);
}

static void block_done(lh_job_t *job) {
  (void)job;
  atomic_fetch_add(&g_blocked_done, 1);
}

/* The pool's queue is full (peak load): the prober cannot run its check and does not know, so it
 * keeps the last outcome instead of turning every host not-ready together. */
static void test_full_queue_keeps_last_result(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_pool_create(&pool, "busypool", 1, 1), 0);
  LH_CHECK_INT(lh_pools_register(pool), 0);
  LH_CHECK_INT(lh_ready_register("busy", "busypool", always_ok, NULL, "Busy", "busy"), 0);
  lh_ready_prober_t p;
  lh_ready_prober_init(&p, &loop, cq, NULL, NULL);
  lh_ready_prober_start(&p, 5);
  run_until(&loop, ready_now, 2000);
  LH_CHECK_INT(ready_now(), 1);
  for (int i = 0; i < 2000 && lh_ready_prober_busy(&p); i++)
    usleep(1000); /* the loop does not run: the next probe cannot start meanwhile */
  for (int i = 0; i < 2000 && lh_ready_prober_busy(&p); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  /* Fill the pool (one job running, one waiting) before the loop runs the next probe. */
  lh_job_t jobs[4];
  int accepted = 0;
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 4; i++) {
    jobs[i].work = block_work;
    jobs[i].done = block_done;
    if (lh_pool_submit(pool, &jobs[i], cq) != 0)
      break;
    accepted++;
  }
  LH_CHECK(accepted >= 1 && accepted < 4);
  for (int i = 0; i < 100; i++) { /* ~20 probes, each finding the queue full */
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(ready_now(), 1);
  atomic_store(&g_unblock, 1);
  for (int i = 0; i < 2000 && atomic_load(&g_blocked_done) < accepted; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  lh_ready_prober_stop(&p);
  for (int i = 0; i < 2000 && lh_ready_prober_busy(&p); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  lh_ready_prober_close(&p);
  lh_ready_unregister("busy");
  lh_pools_destroy_all();
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  LH_RUN(test_register);
  LH_RUN(test_prober);
  LH_RUN(test_unregister_in_flight);
  LH_RUN(test_full_queue_keeps_last_result);
  return lh_test_done();
}
