/* server.h: the process (listen address, workers, signals, shutdown) and each worker thread
 * (its loop, listener, Lua state and connections). Workers share only what is immutable or
 * thread-safe: the configuration, the job pools and the atomic counters below. */
#ifndef LH_SERVER_H
#define LH_SERVER_H

#include <stdatomic.h>
#include <uv.h>

#include "config.h"
#include "http.h"
#include "jobs.h"
#include "readiness.h"
#include "reload.h"
#include "vm.h"

typedef struct lh_server_s lh_server_t;
typedef struct lh_worker_s lh_worker_t;
struct lh_conn_s;
typedef struct lh_mail_s lh_mail_t;
typedef struct lh_retired_s lh_retired_t;

struct lh_worker_s {
  lh_server_t *srv;
  int id;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_tcp_t listener;
  int listener_open; /* the listener handle was initialised and must be closed */
  uv_tcp_t admin;    /* worker 0: the admin listener (admin_listen) */
  int admin_open;
  int admin_conns; /* connections the admin listener accepted, open now (conn.c) */
  int admin_jobs;  /* reloads asked on the admin listener, not done yet (admin.c) */
  uv_async_t mail; /* work posted by other threads (lh_worker_post) */
  uv_mutex_t mail_mu;
  lh_mail_t *mail_head, *mail_tail;
  uv_timer_t reap;              /* frees retired VMs once their last request ended */
  lh_retired_t *retired;        /* VMs of earlier generations still running requests */
  lh_gen_t *gen;                /* the live generation of this worker (its configuration) */
  const lh_config_t *cfg;       /* its configuration: what this worker's requests obey */
  uv_async_t wakeup;            /* "stop" from the main thread */
  uv_timer_t grace;             /* bounds the wait for in-flight requests at shutdown */
  uv_timer_t start_retry;       /* worker 0: retries the scripts' on_start hooks */
  uv_timer_t trim;              /* worker 0: gives memory back to the system once a burst is over */
  unsigned long long trim_seen; /* srv->requests at the last trim tick */
  int trim_due;                 /* requests were served since the last trim */
  lh_ready_prober_t ready;      /* worker 0: runs the bindings' readiness checks for /readyz */
  int start_running;
  lh_cq_t *cq;
  lh_vm_t *vm;
  lh_http_limits_t limits;
  struct lh_conn_s *conns; /* every open connection, for shutdown */
  int stopping;            /* 1: draining, 2: grace period over */
  int lingering;           /* connections in LINGERING (conn.c), at most LH_CONN_LINGER_MAX */
  int finished;            /* shutdown done: the worker's handles are closing */
  int start_rc;            /* result of start-up, read by the main thread */
  char start_err[512];
  uv_sem_t started;
  unsigned long long next_request;
  lh_buf_t out; /* response scratch buffer, reused */
  char read_buf[65536];
};

#define LH_STATUS_SLOTS 600

struct lh_server_s {
  const lh_config_t *cfg; /* as started: what only a restart changes (listen, workers, ...) */
  const char *config_path;
  lh_gen_t *gen0;                   /* the generation the workers start with */
  const lh_script_set_t *start_set; /* its scripts, read once for every worker */
  lh_reloader_t *reloader;
  char admin_host[256];
  int admin_port; /* the admin listener's bound port, 0 when off */
  int nworkers;
  lh_worker_t *workers;
  char host[256];
  int port; /* the bound port (resolved when the configuration asks for port 0) */
  atomic_int connections;
  atomic_int draining; /* /readyz answers 503 */
  atomic_int started;  /* the scripts' on_start hooks succeeded */
  /* 1 while someone runs the on_start hooks before `started`: worker 0's attempt or a reload's
   * candidate (reload.c); taken with a compare-and-swap, so they never run twice at once. */
  atomic_int hooks_busy;
  atomic_ullong status_count[LH_STATUS_SLOTS];
  atomic_ullong requests;
  char id_prefix[9];      /* random per process: request ids are unique across restarts */
  struct lh_docs_s *docs; /* the Swagger UI files /docs serves (docs.h), read once at start */
};

/* Starts the workers (each binds its own SO_REUSEPORT listener; worker 0 also the admin
 * listener) and the reloader. config_path: as given to lh_config_load (reloads read it again).
 * On failure err says why. */
int lh_server_start(lh_server_t *srv, const lh_config_t *cfg, const char *config_path, char *err,
                    size_t errlen);
/* Runs fn(w, arg) on worker w's loop thread, soon. From any thread. LH_ENOMEM. */
int lh_worker_post(lh_worker_t *w, void (*fn)(lh_worker_t *w, void *arg), void *arg);
/* reload.c's commit: hands worker i vms[i] (built from gen) and waits until every worker runs
 * it for new requests. The workers' earlier VMs finish their requests, then are freed. */
int lh_server_commit(lh_server_t *srv, lh_vm_t **vms, lh_gen_t *gen); /* 0 or LH_ENOMEM */
/* Called by whatever may have been the last thing a stopping worker waited for (conn.c when it
 * unlinks a connection): finishes the worker when nothing is left. */
void lh_worker_check_stopped(lh_worker_t *w);
/* Runs until SIGTERM, SIGINT or SIGQUIT, then drains and stops the workers; SIGHUP reloads.
 * Returns the exit code. */
int lh_server_run(lh_server_t *srv);
/* After the pools are gone (no job can reach the reloader any more): frees what run kept. */
void lh_server_cleanup(lh_server_t *srv);

#endif
