/* jobs_bench.c: the cost of host/jobs.c's hand-offs alone, without HTTP, Lua or a database (built
 * and run by `bench/run --jobs`). One libuv loop drives INFLIGHT simulated requests; each request
 * is JOBS jobs in sequence on a pool of THREADS threads, as `GET /users/{id}` is two reads in
 * sequence (the next job is submitted from the previous one's `done`, on the loop). A job's work
 * blocks for WORK_US microseconds in nanosleep, as a database read blocks on its socket. When a
 * request's last job is done, the next request starts, until REQUESTS have completed.
 *
 *   jobs_bench THREADS INFLIGHT REQUESTS WORK_US JOBS
 *
 * Prints one JSON line: {"req_s", "cpu_us_per_req", "csw_per_req", "involuntary_per_req"} where
 * CPU time and context switches are the whole process's (loop and pool threads). */
#include "jobs.h"
#include "lh.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
  lh_job_t job;
  int left; /* jobs still to run for this request */
} req_t;

static lh_pool_t *g_pool;
static lh_cq_t *g_cq;
static long g_work_ns;
static int g_jobs, g_started, g_finished, g_total;

static void work(lh_job_t *job) {
  (void)job;
  struct timespec ts = {0, g_work_ns};
  nanosleep(&ts, NULL);
}

static void done(lh_job_t *job);

static void submit(req_t *r) {
  r->job.work = work;
  r->job.done = done;
  if (lh_pool_submit(g_pool, &r->job, g_cq) != 0) {
    fprintf(stderr, "jobs_bench: submit failed\n");
    exit(1);
  }
}

static void done(lh_job_t *job) {
  req_t *r = LH_CONTAINER_OF(job, req_t, job);
  if (--r->left > 0) {
    submit(r);
    return;
  }
  g_finished++;
  if (g_started < g_total) {
    g_started++;
    r->left = g_jobs;
    submit(r);
  } else if (g_finished == g_total) {
    lh_cq_close(g_cq);
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: jobs_bench THREADS INFLIGHT REQUESTS WORK_US JOBS\n");
    return 2;
  }
  int threads = atoi(argv[1]), inflight = atoi(argv[2]);
  g_total = atoi(argv[3]);
  g_work_ns = atol(argv[4]) * 1000L;
  g_jobs = atoi(argv[5]);
  if (threads < 1 || inflight < 1 || g_total < inflight || g_work_ns < 0 || g_jobs < 1) {
    fprintf(stderr, "jobs_bench: bad arguments\n");
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  if (lh_cq_create(&g_cq, &loop) != 0 ||
      lh_pool_create(&g_pool, "bench", (unsigned)threads, (unsigned)inflight) != 0) {
    fprintf(stderr, "jobs_bench: set-up failed\n");
    return 1;
  }
  req_t *reqs = calloc((size_t)inflight, sizeof *reqs);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = now_s();
  for (int i = 0; i < inflight; i++) {
    g_started++;
    reqs[i].left = g_jobs;
    submit(&reqs[i]);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  double t1 = now_s();
  getrusage(RUSAGE_SELF, &r1);
  double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
               (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
               (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
               (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  long vcsw = r1.ru_nvcsw - r0.ru_nvcsw, icsw = r1.ru_nivcsw - r0.ru_nivcsw;
  printf("{\"req_s\": %.0f, \"cpu_us_per_req\": %.2f, \"csw_per_req\": %.2f, "
         "\"involuntary_per_req\": %.2f}\n",
         g_total / (t1 - t0), cpu / g_total * 1e6, (double)(vcsw + icsw) / g_total,
         (double)icsw / g_total);
  lh_pool_destroy(g_pool);
  uv_loop_close(&loop);
  free(reqs);
  return 0;
}
