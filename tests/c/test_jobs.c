/* test_jobs.c: unit tests for host/jobs.c: parallelism, the bounded queue, delivery of `done`
 * on the loop thread in completion order, cancellation at destroy, and the pool registry. */
#include "jobs.h"
#include "lh.h"
#include "lh_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
  lh_job_t job;
  int id;
  int sleep_ms;
  uv_sem_t *gate; /* when set, work waits on it */
  int worked;
  int done_calls;
  int cancelled;
  pthread_t done_thread;
} test_job_t;

static int g_done_count;
static int g_done_order[32];

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static void work_cb(lh_job_t *job) {
  test_job_t *t = LH_CONTAINER_OF(job, test_job_t, job);
  if (t->gate)
    uv_sem_wait(t->gate);
  if (t->sleep_ms)
    sleep_ms(t->sleep_ms);
  t->worked = 1;
}

static void done_cb(lh_job_t *job) {
  test_job_t *t = LH_CONTAINER_OF(job, test_job_t, job);
  t->done_calls++;
  t->cancelled = job->cancelled;
  t->done_thread = pthread_self();
  if (g_done_count < (int)LH_ARRAY_SIZE(g_done_order))
    g_done_order[g_done_count] = t->id;
  g_done_count++;
}

static void init_job(test_job_t *t, int id, int ms, uv_sem_t *gate) {
  memset(t, 0, sizeof *t);
  t->job.work = work_cb;
  t->job.done = done_cb;
  t->id = id;
  t->sleep_ms = ms;
  t->gate = gate;
}

/* Runs the loop until `want` done calls have happened in total. */
static void run_until(uv_loop_t *loop, int want) {
  while (g_done_count < want)
    uv_run(loop, UV_RUN_ONCE);
}

static void close_cq(uv_loop_t *loop, lh_cq_t *cq) {
  lh_cq_close(cq);
  uv_run(loop, UV_RUN_DEFAULT);
}

/* Waits (briefly polling) until the pool reports `n` running jobs. */
static void wait_running(lh_pool_t *pool, unsigned n) {
  for (int i = 0; i < 2000 && lh_pool_running(pool) != n; i++)
    sleep_ms(1);
}

static void test_parallel(void) {
  enum { N = 4 };
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "par", N, 8), 0);
  LH_CHECK_STR(lh_pool_name(pool), "par");
  test_job_t jobs[N];
  g_done_count = 0;
  unsigned long long t0 = lh_now_ns();
  for (int i = 0; i < N; i++) {
    init_job(&jobs[i], i, 100, NULL);
    LH_CHECK_INT(lh_pool_submit(pool, &jobs[i].job, cq), 0);
  }
  run_until(&loop, N);
  double ms = (double)(lh_now_ns() - t0) / 1e6;
  printf("     %d jobs of 100 ms on %d threads: %.1f ms\n", N, N, ms);
  LH_CHECK(ms < 180.0);
  LH_CHECK(ms >= 99.0);
  pthread_t self = pthread_self();
  for (int i = 0; i < N; i++) {
    LH_CHECK_INT(jobs[i].done_calls, 1);
    LH_CHECK_INT(jobs[i].worked, 1);
    LH_CHECK_INT(jobs[i].cancelled, 0);
    LH_CHECK(pthread_equal(jobs[i].done_thread, self));
  }
  LH_CHECK_INT(lh_pool_queued(pool), 0);
  LH_CHECK_INT(lh_pool_running(pool), 0);
  lh_pool_destroy(pool);
  close_cq(&loop, cq);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_queue_and_busy(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "q", 1, 2), 0);
  uv_sem_t gate;
  uv_sem_init(&gate, 0);
  test_job_t a, b, c, d;
  g_done_count = 0;
  init_job(&a, 1, 0, &gate);
  init_job(&b, 2, 0, NULL);
  init_job(&c, 3, 0, NULL);
  init_job(&d, 4, 0, NULL);
  LH_CHECK_INT(lh_pool_submit(pool, &a.job, cq), 0);
  wait_running(pool, 1);
  LH_CHECK_INT(lh_pool_running(pool), 1);
  /* The running job does not count against the queue: two more may wait. */
  LH_CHECK_INT(lh_pool_submit(pool, &b.job, cq), 0);
  LH_CHECK_INT(lh_pool_submit(pool, &c.job, cq), 0);
  LH_CHECK_INT(lh_pool_queued(pool), 2);
  LH_CHECK_INT(lh_pool_rejected(pool), 0);
  LH_CHECK_INT(lh_pool_submit(pool, &d.job, cq), LH_EBUSY);
  /* counted for luahost_pool_jobs_rejected_total */
  LH_CHECK_INT(lh_pool_rejected(pool), 1);
  LH_CHECK_INT(d.done_calls, 0); /* a failed submit calls nothing */
  uv_sem_post(&gate);
  run_until(&loop, 3);
  LH_CHECK_INT(g_done_order[0], 1);
  LH_CHECK_INT(g_done_order[1], 2);
  LH_CHECK_INT(g_done_order[2], 3);
  /* The queue has room again. */
  LH_CHECK_INT(lh_pool_submit(pool, &d.job, cq), 0);
  run_until(&loop, 4);
  LH_CHECK_INT(d.done_calls, 1);
  LH_CHECK_INT(d.worked, 1);
  lh_pool_destroy(pool);
  close_cq(&loop, cq);
  uv_sem_destroy(&gate);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static void *open_gate_later(void *arg) {
  sleep_ms(50);
  uv_sem_post(arg);
  return NULL;
}

static void test_destroy_cancels_waiting(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "cancel", 1, 4), 0);
  uv_sem_t gate;
  uv_sem_init(&gate, 0);
  test_job_t a, b, c;
  g_done_count = 0;
  init_job(&a, 1, 0, &gate);
  init_job(&b, 2, 0, NULL);
  init_job(&c, 3, 0, NULL);
  LH_CHECK_INT(lh_pool_submit(pool, &a.job, cq), 0);
  wait_running(pool, 1);
  LH_CHECK_INT(lh_pool_submit(pool, &b.job, cq), 0);
  LH_CHECK_INT(lh_pool_submit(pool, &c.job, cq), 0);
  /* Destroy waits for the running job, which waits for the gate: open it from another thread. */
  pthread_t opener;
  LH_CHECK_INT(pthread_create(&opener, NULL, open_gate_later, &gate), 0);
  lh_pool_destroy(pool);
  pthread_join(opener, NULL);
  /* Nothing is delivered until the loop runs. */
  LH_CHECK_INT(g_done_count, 0);
  run_until(&loop, 3);
  LH_CHECK_INT(a.done_calls, 1);
  LH_CHECK_INT(a.cancelled, 0);
  LH_CHECK_INT(a.worked, 1);
  LH_CHECK_INT(b.done_calls, 1);
  LH_CHECK_INT(b.cancelled, 1);
  LH_CHECK_INT(b.worked, 0);
  LH_CHECK_INT(c.done_calls, 1);
  LH_CHECK_INT(c.cancelled, 1);
  LH_CHECK_INT(c.worked, 0);
  /* Cancelled jobs were posted before the running one finished. */
  LH_CHECK_INT(g_done_order[0], 2);
  LH_CHECK_INT(g_done_order[1], 3);
  LH_CHECK_INT(g_done_order[2], 1);
  close_cq(&loop, cq);
  uv_sem_destroy(&gate);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_close_delivers_pending(void) {
  /* A job that finished after the last wake-up was handled still gets `done` when the queue
   * closes. */
  uv_loop_t loop;
  uv_loop_init(&loop);
  lh_cq_t *cq = NULL;
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "pending", 1, 1), 0);
  test_job_t a;
  g_done_count = 0;
  init_job(&a, 1, 0, NULL);
  LH_CHECK_INT(lh_pool_submit(pool, &a.job, cq), 0);
  lh_pool_destroy(pool); /* joins, so `a` has finished and sits in the queue's list */
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(a.done_calls, 1);
  LH_CHECK(pthread_equal(a.done_thread, pthread_self()));
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_two_loops(void) {
  /* Jobs from two loops on one pool each come back to their own loop. */
  uv_loop_t l1, l2;
  uv_loop_init(&l1);
  uv_loop_init(&l2);
  lh_cq_t *c1 = NULL, *c2 = NULL;
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_cq_create(&c1, &l1), 0);
  LH_CHECK_INT(lh_cq_create(&c2, &l2), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "two", 2, 16), 0);
  test_job_t j[6];
  g_done_count = 0;
  for (int i = 0; i < 6; i++) {
    init_job(&j[i], i, 1, NULL);
    LH_CHECK_INT(lh_pool_submit(pool, &j[i].job, i % 2 ? c2 : c1), 0);
  }
  /* Each loop delivers only its own three jobs. */
  while (j[0].done_calls + j[2].done_calls + j[4].done_calls < 3)
    uv_run(&l1, UV_RUN_ONCE);
  while (j[1].done_calls + j[3].done_calls + j[5].done_calls < 3)
    uv_run(&l2, UV_RUN_ONCE);
  LH_CHECK_INT(g_done_count, 6);
  lh_pool_destroy(pool);
  close_cq(&l1, c1);
  close_cq(&l2, c2);
  LH_CHECK_INT(uv_loop_close(&l1), 0);
  LH_CHECK_INT(uv_loop_close(&l2), 0);
}

static void test_bad_args(void) {
  lh_pool_t *pool = NULL;
  LH_CHECK_INT(lh_pool_create(&pool, "x", 0, 1), LH_EINVAL);
  LH_CHECK_INT(lh_pool_create(&pool, "x", 1, 0), LH_EINVAL);
  LH_CHECK_INT(lh_pool_create(&pool, NULL, 1, 1), LH_EINVAL);
  LH_CHECK_INT(lh_pool_create(&pool, "x", 1, 1), 0);
  test_job_t t;
  init_job(&t, 1, 0, NULL);
  t.job.work = NULL;
  LH_CHECK_INT(lh_pool_submit(pool, &t.job, NULL), LH_EINVAL);
  lh_pool_destroy(pool);
  lh_pool_destroy(NULL);
}

static void test_registry(void) {
  lh_pool_t *db = NULL, *hash = NULL, *dup = NULL;
  LH_CHECK_INT(lh_pool_create(&db, "db", 2, 4), 0);
  LH_CHECK_INT(lh_pool_create(&hash, "hash", 1, 4), 0);
  LH_CHECK_INT(lh_pool_create(&dup, "db", 1, 1), 0);
  LH_CHECK_INT(lh_pools_register(db), 0);
  LH_CHECK_INT(lh_pools_register(hash), 0);
  LH_CHECK_INT(lh_pools_register(dup), LH_EINVAL);
  lh_pool_destroy(dup);
  LH_CHECK(lh_pools_find("db") == db);
  LH_CHECK(lh_pools_find("hash") == hash);
  LH_CHECK(lh_pools_find("nope") == NULL);
  lh_pools_destroy_all();
  LH_CHECK(lh_pools_find("db") == NULL);
  /* The registry holds at most 16 pools. */
  char name[16];
  int rc = 0;
  for (int i = 0; i < 17; i++) {
    lh_pool_t *p = NULL;
    snprintf(name, sizeof name, "p%d", i);
    LH_CHECK_INT(lh_pool_create(&p, name, 1, 1), 0);
    rc = lh_pools_register(p);
    if (rc != 0)
      lh_pool_destroy(p);
  }
  LH_CHECK_INT(rc, LH_ELIMIT);
  LH_CHECK(lh_pools_find("p15") != NULL);
  lh_pools_destroy_all();
}

int main(void) {
  LH_RUN(test_parallel);
  LH_RUN(test_queue_and_busy);
  LH_RUN(test_destroy_cancels_waiting);
  LH_RUN(test_close_delivers_pending);
  LH_RUN(test_two_loops);
  LH_RUN(test_bad_args);
  LH_RUN(test_registry);
  return lh_test_done();
}
