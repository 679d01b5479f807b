/* jobs.h: bounded pools of threads for blocking work, and per-loop completion queues.
 *
 * A job is embedded in its owner's struct (LH_CONTAINER_OF gets the owner back). `work` runs on a
 * pool thread and must not touch any lua_State or loop handle; `done` then runs on the loop that
 * owns the completion queue given at submit time. A job that was accepted by lh_pool_submit always
 * gets its `done` call, also during shutdown (with `cancelled` set if `work` never ran).
 * A submit that fails never calls anything: the caller still owns the job. */
#ifndef LH_JOBS_H
#define LH_JOBS_H

#include <uv.h>

typedef struct lh_job_s lh_job_t;
typedef struct lh_pool_s lh_pool_t;
typedef struct lh_cq_s lh_cq_t;
typedef void (*lh_job_cb)(lh_job_t *job);

struct lh_job_s {
  lh_job_cb work; /* pool thread */
  lh_job_cb done; /* loop thread of `cq` */
  int cancelled;  /* set when the pool shut down before `work` ran */
  /* private */
  lh_cq_t *cq;
  lh_job_t *next;
};

/* Completion queue of one loop: an uv_async_t plus a locked list. */
int lh_cq_create(lh_cq_t **out, uv_loop_t *loop);
/* Closes the async handle; memory is freed in its close callback (run the loop after this).
 * Jobs that finished but were not yet delivered get their `done` call in that callback. The
 * caller must first make sure no job bound to this queue is still waiting or running: destroy
 * the pools, or wait for every `done`. */
void lh_cq_close(lh_cq_t *cq);

/* name is copied; threads >= 1; queue_cap >= 1 is the number of jobs that may wait (not counting
 * the ones running). */
int lh_pool_create(lh_pool_t **out, const char *name, unsigned threads, unsigned queue_cap);
/* LH_EBUSY when the queue is full, LH_ECLOSED after shutdown began. */
int lh_pool_submit(lh_pool_t *pool, lh_job_t *job, lh_cq_t *cq);
const char *lh_pool_name(const lh_pool_t *pool);
unsigned lh_pool_queued(lh_pool_t *pool);             /* waiting, for metrics */
unsigned lh_pool_running(lh_pool_t *pool);            /* being worked on */
unsigned long long lh_pool_rejected(lh_pool_t *pool); /* submits refused: the queue was full */
/* Stops the threads after the running jobs finish; waiting jobs are completed as cancelled.
 * Joins the threads, then frees the pool. The completion queues must still be alive and their
 * loops must run afterwards to deliver the `done` calls. */
void lh_pool_destroy(lh_pool_t *pool);

/* A process-wide registry of named pools (main.c registers "db" and "hash"; the test module,
 * tests/host/test_module.c, registers its own "test" pool). Registering and destroying happen on
 * one thread, before any other thread looks a pool up and after the last lookup (start-up and
 * shutdown); in between the registry is read-only, so lookups from any thread take no lock. */
/* LH_EINVAL when the name is taken, LH_ELIMIT past 16 pools. The registry then owns the pool. */
int lh_pools_register(lh_pool_t *pool);
lh_pool_t *lh_pools_find(const char *name);
/* The i-th registered pool in registration order, or NULL past the last (for metrics). */
lh_pool_t *lh_pools_at(unsigned i);
void lh_pools_destroy_all(void);

#endif
