/* server.c: the process and its workers (see server.h).
 *
 * Each worker thread owns a loop, a listener bound with SO_REUSEPORT to the same address (the
 * kernel spreads connections across them), a completion queue for pool jobs and its own Lua state.
 * Shutdown (SIGTERM/SIGINT): /readyz turns 503 at once so load balancers stop sending, after
 * drain_delay_ms the listeners close, idle connections close, in-flight requests finish (their
 * connections close after the response) within shutdown_grace_ms, and the process exits 0.
 * SIGQUIT stops the same way; SIGHUP asks the reloader (reload.h) for a new generation, which each
 * worker takes on its own loop (on_commit): requests already running finish on the VM they
 * started on, which is freed once its last request ended (retire, on_reap). */
#include "server.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>
#include <sys/socket.h>

#include "conn.h"
#include "docs.h"
#include "json.h"
#include "lh.h"
#include "log.h"
#include "readiness.h"
#include "scheduler.h"

static int parse_listen(const char *listen, char *host, size_t hostlen, int *port) {
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen)
    return LH_EINVAL;
  size_t hl = (size_t)(colon - listen);
  const char *h = listen;
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (hl >= hostlen)
    return LH_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = atoi(colon + 1);
  return 0;
}

/* The workers share the address through SO_REUSEPORT, which the kernel grants to any process of the
 * same user: a second luahost started on a served address would bind it silently and take half of
 * the connections, with its own secret and scripts. So before the workers bind, a probe socket
 * binds the address without SO_REUSEPORT; EADDRINUSE means another process listens there. (Two
 * hosts started in the same instant could both pass; the probe guards the usual mistake.) */
static int refuse_if_served(const lh_server_t *srv, const struct sockaddr *sa, char *err,
                            size_t errlen) {
  if (srv->port == 0)
    return 0;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "listen: cannot create a socket: %s", strerror(errno));
    return LH_EIO;
  }
  int one = 1; /* TIME_WAIT connections of an earlier run must not count as "served" */
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t len =
      sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int rc = bind(fd, sa, len) == 0 ? 0 : errno;
  close(fd);
  if (rc == EADDRINUSE) {
    snprintf(err, errlen,
             "listen on %s: the address is already served by another process (is another "
             "luahost running?)",
             srv->cfg->listen);
    return LH_EIO;
  }
  return 0; /* other errors (EADDRNOTAVAIL, EACCES) are reported by the workers' own bind */
}

static int bind_listener(lh_worker_t *w, char *err, size_t errlen) {
  lh_server_t *srv = w->srv;
  struct sockaddr_storage ss;
  int rc;
  if (strchr(srv->host, ':'))
    rc = uv_ip6_addr(srv->host, srv->port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(srv->host, srv->port, (struct sockaddr_in *)&ss);
  if (rc != 0) {
    snprintf(err, errlen, "listen: invalid address %s", srv->cfg->listen);
    return LH_EINVAL;
  }
  if (w->id == 0 && (rc = refuse_if_served(srv, (struct sockaddr *)&ss, err, errlen)) != 0)
    return rc;
  rc = uv_tcp_init_ex(&w->loop, &w->listener, ss.ss_family);
  if (rc != 0) {
    snprintf(err, errlen, "listen: %s", uv_strerror(rc));
    return LH_EIO;
  }
  w->listener.data = w;
  w->listener_open = 1;
  uv_os_fd_t fd;
  int one = 1;
  /* libuv 1.44 has no flag for SO_REUSEPORT: set it on the socket before bind. */
  if (uv_fileno((uv_handle_t *)&w->listener, &fd) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    snprintf(err, errlen, "listen: cannot set SO_REUSEPORT");
    return LH_EIO;
  }
  rc = uv_tcp_bind(&w->listener, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&w->listener, 1024, lh_conn_on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "listen on %s: %s", srv->cfg->listen, uv_strerror(rc));
    return LH_EIO;
  }
  if (srv->port == 0) {
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&w->listener, (struct sockaddr *)&bound, &len);
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
  }
  return 0;
}

static void close_cb_noop(uv_handle_t *h) {
  (void)h;
}

/* Worker 0's admin listener: one socket, bound exclusively (no SO_REUSEPORT: a second host on the
 * same admin address fails at start instead of sharing it). */
static int bind_admin(lh_worker_t *w, char *err, size_t errlen) {
  lh_server_t *srv = w->srv;
  const char *listen = srv->cfg->admin_listen;
  if (strcmp(listen, "off") == 0)
    return 0;
  struct sockaddr_storage ss;
  int port, rc;
  if (parse_listen(listen, srv->admin_host, sizeof(srv->admin_host), &port) != 0) {
    snprintf(err, errlen, "admin_listen: expected host:port or off, got '%s'", listen);
    return LH_EINVAL;
  }
  if (strchr(srv->admin_host, ':'))
    rc = uv_ip6_addr(srv->admin_host, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(srv->admin_host, port, (struct sockaddr_in *)&ss);
  if (rc != 0) {
    snprintf(err, errlen, "admin_listen: invalid address %s", listen);
    return LH_EINVAL;
  }
  uv_tcp_init(&w->loop, &w->admin);
  w->admin.data = w;
  w->admin_open = 1;
  rc = uv_tcp_bind(&w->admin, (struct sockaddr *)&ss, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&w->admin, 64, lh_conn_on_connection);
  if (rc != 0) {
    snprintf(err, errlen, "admin_listen on %s: %s (set admin_listen to another address, or off)",
             listen, uv_strerror(rc));
    return LH_EIO;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&w->admin, (struct sockaddr *)&bound, &len);
  srv->admin_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                      : ((struct sockaddr_in *)&bound)->sin_port);
  return 0;
}

/* ---- mail: work other threads post to a worker ---- */

struct lh_mail_s {
  void (*fn)(lh_worker_t *w, void *arg);
  void *arg;
  int heap; /* allocated by lh_worker_post (else embedded in its sender's struct) */
  lh_mail_t *next;
};

static void post(lh_worker_t *w, lh_mail_t *m) {
  m->next = NULL;
  uv_mutex_lock(&w->mail_mu);
  if (w->mail_tail)
    w->mail_tail->next = m;
  else
    w->mail_head = m;
  w->mail_tail = m;
  uv_mutex_unlock(&w->mail_mu);
  uv_async_send(&w->mail);
}

int lh_worker_post(lh_worker_t *w, void (*fn)(lh_worker_t *w, void *arg), void *arg) {
  lh_mail_t *m = malloc(sizeof(*m));
  if (!m)
    return LH_ENOMEM;
  m->fn = fn;
  m->arg = arg;
  m->heap = 1;
  post(w, m);
  return 0;
}

static void on_mail(uv_async_t *a) {
  lh_worker_t *w = a->data;
  uv_mutex_lock(&w->mail_mu);
  lh_mail_t *m = w->mail_head;
  w->mail_head = w->mail_tail = NULL;
  uv_mutex_unlock(&w->mail_mu);
  while (m) {
    lh_mail_t *next = m->next;
    int heap = m->heap;
    m->fn(w, m->arg); /* may free an embedded m */
    if (heap)
      free(m);
    m = next;
  }
}

/* ---- generations: commit and retire ---- */

struct lh_retired_s {
  lh_vm_t *vm;
  lh_gen_t *gen;
  lh_retired_t *next;
};

static void set_limits(lh_worker_t *w) {
  const lh_config_t *cfg = w->cfg;
  w->limits.max_url_bytes = (size_t)cfg->max_url_bytes;
  w->limits.max_header_bytes = (size_t)cfg->max_header_bytes;
  w->limits.max_header_fields = (size_t)cfg->max_header_fields;
  w->limits.max_body_bytes = (size_t)cfg->max_body_bytes;
}

static void on_idle(void *ud);

/* Frees every retired VM whose last request ended (a zero timer: never from inside the VM). */
static void on_reap(uv_timer_t *t) {
  lh_worker_t *w = t->data;
  lh_retired_t **p = &w->retired;
  while (*p) {
    lh_retired_t *r = *p;
    if (lh_vm_busy(r->vm)) {
      p = &r->next;
      continue;
    }
    *p = r->next;
    lh_vm_free(r->vm);
    lh_gen_unref(r->gen);
    free(r);
  }
  lh_worker_check_stopped(w);
}

static void on_retired_idle(void *ud) {
  lh_worker_t *w = ud;
  uv_timer_start(&w->reap, on_reap, 0, 0);
}

typedef struct {
  lh_mail_t mail;
  lh_vm_t *vm;
  lh_gen_t *gen;
  lh_retired_t *node; /* allocated by the committer: retiring cannot fail */
  uv_sem_t *acks;
} lh_commit_t;

static void on_commit(lh_worker_t *w, void *arg) {
  lh_commit_t *c = arg;
  lh_retired_t *r = c->node;
  r->vm = w->vm;
  r->gen = w->gen;
  w->vm = c->vm;
  w->gen = c->gen;
  w->cfg = lh_gen_config(c->gen);
  set_limits(w);
  lh_vm_on_idle(w->vm, on_idle, w);
  if (lh_vm_busy(r->vm)) {
    lh_vm_on_idle(r->vm, on_retired_idle, w);
    r->next = w->retired;
    w->retired = r;
  } else {
    lh_vm_free(r->vm);
    lh_gen_unref(r->gen);
    free(r);
  }
  uv_sem_post(c->acks);
}

int lh_server_commit(lh_server_t *srv, lh_vm_t **vms, lh_gen_t *gen) {
  int n = srv->nworkers;
  lh_commit_t *c = calloc((size_t)n, sizeof(*c));
  int rc = c ? 0 : LH_ENOMEM;
  for (int i = 0; rc == 0 && i < n; i++)
    if (!(c[i].node = calloc(1, sizeof(lh_retired_t))))
      rc = LH_ENOMEM;
  if (rc != 0) {
    for (int i = 0; c && i < n; i++)
      free(c[i].node);
    free(c);
    return rc;
  }
  /* Everything is allocated: from here nothing fails, so no worker commits alone. */
  uv_sem_t acks;
  uv_sem_init(&acks, 0);
  for (int i = 0; i < n; i++) {
    c[i].mail.fn = on_commit;
    c[i].mail.arg = &c[i];
    c[i].mail.heap = 0;
    c[i].vm = vms[i];
    c[i].gen = gen;
    c[i].acks = &acks;
    lh_gen_ref(gen); /* the worker's */
    post(&srv->workers[i], &c[i].mail);
  }
  for (int i = 0; i < n; i++)
    uv_sem_wait(&acks);
  uv_sem_destroy(&acks);
  free(c);
  if (!atomic_load(&srv->started))
    atomic_store(&srv->started, 1); /* the candidate's on_start hooks passed (reload.c) */
  return 0;
}

/* Memory after a burst: a thousand concurrent requests with large bodies leave the allocator's
 * heaps grown (freed chunks stay mapped in the threads' arenas), so the resident size stays at
 * the burst's peak long after it ended. Once a second worker 0 looks at the request counter:
 * when requests were served and none arrived for a whole tick while its VM is idle, the process
 * is idle after activity and malloc_trim gives the free pages of every arena back. */
#define LH_TRIM_TICK_MS 1000

static void on_trim_tick(uv_timer_t *t) {
  lh_worker_t *w = t->data;
  unsigned long long seen = atomic_load(&w->srv->requests);
  if (seen != w->trim_seen) {
    w->trim_seen = seen;
    w->trim_due = 1;
    return;
  }
  if (!w->trim_due || w->stopping || lh_vm_busy(w->vm))
    return;
  w->trim_due = 0;
  malloc_trim(0);
}

static void worker_finish(lh_worker_t *w) {
  uv_timer_stop(&w->grace);
  uv_timer_stop(&w->trim);
  if (!uv_is_closing((uv_handle_t *)&w->trim))
    uv_close((uv_handle_t *)&w->trim, close_cb_noop);
  uv_timer_stop(&w->start_retry);
  uv_timer_stop(&w->reap);
  if (!uv_is_closing((uv_handle_t *)&w->reap))
    uv_close((uv_handle_t *)&w->reap, close_cb_noop);
  if (!uv_is_closing((uv_handle_t *)&w->mail))
    uv_close((uv_handle_t *)&w->mail, close_cb_noop);
  if (w->admin_open && !uv_is_closing((uv_handle_t *)&w->admin))
    uv_close((uv_handle_t *)&w->admin, close_cb_noop);
  lh_ready_prober_close(&w->ready);
  if (!uv_is_closing((uv_handle_t *)&w->start_retry))
    uv_close((uv_handle_t *)&w->start_retry, close_cb_noop);
  if (!uv_is_closing((uv_handle_t *)&w->grace))
    uv_close((uv_handle_t *)&w->grace, close_cb_noop);
  if (!uv_is_closing((uv_handle_t *)&w->wakeup))
    uv_close((uv_handle_t *)&w->wakeup, close_cb_noop);
  if (w->listener_open && !uv_is_closing((uv_handle_t *)&w->listener))
    uv_close((uv_handle_t *)&w->listener, close_cb_noop);
  if (w->cq) {
    lh_cq_close(w->cq);
    w->cq = NULL;
  }
}

/* Shutdown ends when nothing is left: no connection, no task on the VM, no database probe in
 * flight (it will post to this loop's completion queue). Checked on every event that removes one
 * of them (a connection unlinked, the VM going idle, a probe done) rather than polled. */
void lh_worker_check_stopped(lh_worker_t *w) {
  if (!w->stopping || w->finished || w->conns || w->retired || w->admin_jobs || lh_vm_busy(w->vm) ||
      lh_ready_prober_busy(&w->ready))
    return;
  w->finished = 1;
  worker_finish(w);
}

static void on_idle(void *ud) {
  lh_worker_check_stopped(ud);
}

static void on_grace_over(uv_timer_t *t) {
  lh_worker_t *w = t->data;
  w->stopping = 2;
  lh_warn("worker %d: shutdown grace period over: closing connections, waking sleepers", w->id);
  lh_conn_close_all(w);
  lh_vm_cancel(w->vm);
  for (lh_retired_t *r = w->retired; r; r = r->next)
    lh_vm_cancel(r->vm);
  lh_worker_check_stopped(w);
}

static void on_wakeup(uv_async_t *a) {
  lh_worker_t *w = a->data;
  if (w->stopping)
    return;
  w->stopping = 1;
  lh_ready_prober_stop(&w->ready);
  if (w->listener_open && !uv_is_closing((uv_handle_t *)&w->listener))
    uv_close((uv_handle_t *)&w->listener, close_cb_noop);
  if (w->admin_open && !uv_is_closing((uv_handle_t *)&w->admin))
    uv_close((uv_handle_t *)&w->admin, close_cb_noop);
  lh_conn_close_idle(w);
  /* The worker's live generation: shutdown_grace_ms is reloadable. */
  uv_timer_start(&w->grace, on_grace_over, (uint64_t)w->cfg->shutdown_grace_ms, 0);
  lh_worker_check_stopped(w);
}

#define LH_START_RETRY_MS 5000
static void run_start_hooks(lh_worker_t *w);

static void on_start_retry(uv_timer_t *t) {
  run_start_hooks(t->data);
}

static void on_start_done(void *ud, int ok, const char *text) {
  lh_worker_t *w = ud;
  w->start_running = 0;
  if (ok)
    atomic_store(&w->srv->started, 1);
  atomic_store(&w->srv->hooks_busy, 0); /* after `started`: a reload waiting for it sees both */
  if (ok) {
    lh_info("start-up hooks done: the host is ready");
    return;
  }
  lh_error("start-up hook failed (retrying in %d s): %s", LH_START_RETRY_MS / 1000, text);
  if (!w->stopping)
    uv_timer_start(&w->start_retry, on_start_retry, LH_START_RETRY_MS, 0);
}

/* The scripts' on_start hooks (for example creating indexes) run once per process, on worker 0,
 * in a coroutine so they can wait for the database; until they succeed /readyz answers 503 (a
 * reload before then runs the candidate's hooks during its validation: reload.c). */
static void run_start_hooks(lh_worker_t *w) {
  /* started: a reload's candidate ran its hooks meanwhile and went live (reload.c) */
  if (w->stopping || w->start_running || atomic_load(&w->srv->started))
    return;
  int idle = 0;
  if (!atomic_compare_exchange_strong(&w->srv->hooks_busy, &idle, 1)) {
    /* A reload's candidate runs them now: look again at the next retry. */
    uv_timer_start(&w->start_retry, on_start_retry, LH_START_RETRY_MS, 0);
    return;
  }
  w->start_running = 1;
  lh_vm_run_hook(w->vm, NULL, 0, NULL, on_start_done, w);
}

static void free_vms(lh_worker_t *w) {
  while (w->retired) {
    lh_retired_t *r = w->retired;
    w->retired = r->next;
    lh_vm_free(r->vm);
    lh_gen_unref(r->gen);
    free(r);
  }
  lh_vm_free(w->vm);
  w->vm = NULL;
  lh_gen_unref(w->gen);
  w->gen = NULL;
}

static void worker_main(void *arg) {
  lh_worker_t *w = arg;
  int rc = uv_loop_init(&w->loop);
  if (rc != 0) {
    snprintf(w->start_err, sizeof(w->start_err), "loop: %s", uv_strerror(rc));
    w->start_rc = LH_EIO;
    uv_sem_post(&w->started);
    return;
  }
  lh_buf_init(&w->out);
  uv_async_init(&w->loop, &w->wakeup, on_wakeup);
  w->wakeup.data = w;
  uv_timer_init(&w->loop, &w->grace);
  w->grace.data = w;
  uv_timer_init(&w->loop, &w->start_retry);
  w->start_retry.data = w;
  uv_timer_init(&w->loop, &w->trim);
  w->trim.data = w;
  uv_timer_init(&w->loop, &w->reap);
  w->reap.data = w;
  uv_async_init(&w->loop, &w->mail, on_mail);
  w->mail.data = w;
  rc = lh_cq_create(&w->cq, &w->loop);
  lh_ready_prober_init(&w->ready, &w->loop, w->cq, on_idle, w);
  if (rc != 0)
    snprintf(w->start_err, sizeof(w->start_err), "completion queue: %s", lh_strerror(rc));
  if (rc == 0)
    rc = lh_vm_create_from(&w->vm, w->cfg, w->srv->start_set, &w->loop, w->cq, w->start_err,
                           sizeof(w->start_err));
  if (rc == 0)
    rc = bind_listener(w, w->start_err, sizeof(w->start_err));
  if (rc == 0 && w->id == 0)
    rc = bind_admin(w, w->start_err, sizeof(w->start_err));
  w->start_rc = rc;
  if (rc != 0) {
    worker_finish(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    free_vms(w);
    uv_loop_close(&w->loop);
    lh_buf_free(&w->out);
    uv_sem_post(&w->started);
    return;
  }
  uv_sem_post(&w->started);
  lh_vm_on_idle(w->vm, on_idle, w);
  if (w->id == 0) {
    uv_timer_start(&w->trim, on_trim_tick, LH_TRIM_TICK_MS, LH_TRIM_TICK_MS);
    uv_unref((uv_handle_t *)&w->trim);
    lh_ready_prober_start(&w->ready, LH_READY_PROBE_MS);
    if (lh_vm_has_start_hooks(w->vm))
      run_start_hooks(w);
    else
      atomic_store(&w->srv->started, 1);
  }
  uv_run(&w->loop, UV_RUN_DEFAULT);
  free_vms(w);
  if (uv_loop_close(&w->loop) != 0)
    lh_warn("worker %d: handles left open at exit", w->id);
  lh_buf_free(&w->out);
}

/* A later worker failed to start: stop the n that did before the caller tears down what they use
 * (pools, bindings). */
static void stop_started(lh_server_t *srv, int n) {
  for (int k = 0; k < n; k++)
    uv_async_send(&srv->workers[k].wakeup);
  for (int k = 0; k < n; k++) {
    uv_thread_join(&srv->workers[k].thread);
    uv_sem_destroy(&srv->workers[k].started);
    uv_mutex_destroy(&srv->workers[k].mail_mu);
  }
  free(srv->workers);
  srv->workers = NULL;
  srv->nworkers = 0;
  lh_docs_free(srv->docs);
  srv->docs = NULL;
}

static int start_workers(lh_server_t *srv, char *err, size_t errlen);

int lh_server_start(lh_server_t *srv, const lh_config_t *cfg, const char *config_path, char *err,
                    size_t errlen) {
  memset(srv, 0, sizeof(*srv));
  srv->cfg = cfg;
  srv->config_path = config_path;
  /* One snapshot of the scripts for every worker, and the first generation's configuration. */
  lh_script_set_t set;
  int rc = lh_script_set_read(&set, cfg->scripts, err, errlen);
  if (rc != 0)
    return rc;
  if (!(srv->gen0 = lh_gen_new(cfg))) {
    lh_script_set_free(&set);
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  srv->start_set = &set;
  rc = start_workers(srv, err, errlen);
  srv->start_set = NULL;
  if (rc == 0 && (rc = lh_reloader_start(&srv->reloader, srv, config_path, srv->gen0,
                                         set.generation, err, errlen)) != 0)
    stop_started(srv, srv->nworkers);
  lh_script_set_free(&set);
  if (rc != 0) {
    lh_gen_unref(srv->gen0);
    srv->gen0 = NULL;
    return rc;
  }
  if (srv->admin_port)
    lh_info("admin listener on %s:%d (health, metrics, reload)%s", srv->admin_host, srv->admin_port,
            cfg->admin_token[0] ? ", bearer token required" : "");
  if (srv->admin_port && !cfg->admin_token[0] && strcmp(srv->admin_host, "127.0.0.1") != 0 &&
      strcmp(srv->admin_host, "::1") != 0 && strcmp(srv->admin_host, "localhost") != 0)
    lh_warn("the admin listener on %s:%d is not on loopback and has no admin_token: anyone who "
            "reaches that address can reload this host and read its status; set admin_token",
            srv->admin_host, srv->admin_port);
  return 0;
}

static int start_workers(lh_server_t *srv, char *err, size_t errlen) {
  const lh_config_t *cfg = srv->cfg;
  /* Before any worker (and its Lua state) exists: the bounds of a decoded request body. */
  lh_json_limits_t body_limits = {(size_t)cfg->max_body_values,
                                  (size_t)cfg->max_body_decoded_bytes};
  lh_json_set_body_limits(&body_limits);
  if (parse_listen(cfg->listen, srv->host, sizeof(srv->host), &srv->port) != 0) {
    snprintf(err, errlen, "listen: expected host:port, got '%s'", cfg->listen);
    return LH_EINVAL;
  }
  unsigned char rnd[4];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(srv->id_prefix, sizeof(srv->id_prefix), rnd, sizeof(rnd));
  if (lh_docs_load(&srv->docs, cfg) != 0) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  srv->nworkers = cfg->workers > 0 ? cfg->workers : (cores > 0 ? (int)cores : 1);
  srv->workers = calloc((size_t)srv->nworkers, sizeof(lh_worker_t));
  if (!srv->workers) {
    lh_docs_free(srv->docs);
    srv->docs = NULL;
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  /* Worker 0 starts alone first: with port 0 it picks the port the others then share. */
  for (int i = 0; i < srv->nworkers; i++) {
    lh_worker_t *w = &srv->workers[i];
    w->srv = srv;
    w->id = i;
    w->gen = srv->gen0;
    lh_gen_ref(w->gen);
    w->cfg = lh_gen_config(w->gen);
    set_limits(w);
    uv_mutex_init(&w->mail_mu);
    uv_sem_init(&w->started, 0);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
      snprintf(err, errlen, "cannot start worker thread %d", i);
      lh_gen_unref(w->gen);
      uv_mutex_destroy(&w->mail_mu);
      uv_sem_destroy(&w->started);
      stop_started(srv, i);
      return LH_EIO;
    }
    uv_sem_wait(&w->started);
    if (w->start_rc != 0) {
      int rc = w->start_rc; /* w is freed by stop_started */
      snprintf(err, errlen, "%s", w->start_err);
      uv_thread_join(&w->thread);
      uv_sem_destroy(&w->started);
      uv_mutex_destroy(&w->mail_mu);
      stop_started(srv, i);
      return rc;
    }
  }
  lh_info("luahost listening on %s:%d with %d workers, script generation %s", srv->host, srv->port,
          srv->nworkers, lh_vm_generation(srv->workers[0].vm));
  return 0;
}

typedef struct {
  lh_server_t *srv;
  uv_signal_t sigterm, sigint, sigquit, sighup;
  uv_signal_t sigusr1; /* reopens the log files */
  uv_timer_t drain;
  int signalled;
  uint64_t first_signal; /* loop time of the first signal */
} lh_main_t;

static void stop_workers(lh_server_t *srv) {
  for (int i = 0; i < srv->nworkers; i++)
    uv_async_send(&srv->workers[i].wakeup);
}

/* The first stop signal's time (lh_now_ns: clock_gettime, async-signal-safe): read by
 * late_signal. */
static volatile sig_atomic_t g_stop_signalled;
static unsigned long long g_first_signal_ns;

/* A stop signal once the main loop is gone (the workers finish their requests): as on_signal,
 * one within a second of the first is the same request to stop, a later one means "now". Only
 * async-signal-safe calls: no log line (on_signal logs while the loop runs). */
static void late_signal(int signum) {
  (void)signum;
  if (g_stop_signalled && lh_now_ns() - g_first_signal_ns < 1000000000ULL)
    return;
  _exit(1);
}

static void on_drained(uv_timer_t *t) {
  lh_main_t *m = t->data;
  stop_workers(m->srv);
  /* Closing a signal's last handle gives it back its default action at once, which is to kill
   * the process: a reload (systemctl reload) or a log rotation while the workers still finish
   * their requests must not, and a stop signal keeps its meaning (README, "Logs and signals").
   * Each gets its new action right after its handle closes. */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = late_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  uv_close((uv_handle_t *)&m->sigterm, NULL);
  sigaction(SIGTERM, &sa, NULL);
  uv_close((uv_handle_t *)&m->sigint, NULL);
  sigaction(SIGINT, &sa, NULL);
  uv_close((uv_handle_t *)&m->sigquit, NULL);
  sigaction(SIGQUIT, &sa, NULL);
  uv_close((uv_handle_t *)&m->sighup, NULL);
  signal(SIGHUP, SIG_IGN);
  uv_close((uv_handle_t *)&m->sigusr1, NULL);
  signal(SIGUSR1, SIG_IGN);
  uv_close((uv_handle_t *)&m->drain, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  lh_main_t *m = s->data;
  uint64_t now = uv_now(s->loop);
  if (m->signalled++) {
    /* A terminal's Ctrl-C reaches the host and the script that started it, which forwards a
     * SIGTERM: signals within a second are one request to stop. A later one means "now". */
    if (now - m->first_signal < 1000)
      return;
    lh_warn("second signal: exiting now");
    _exit(1);
  }
  m->first_signal = now;
  g_first_signal_ns = lh_now_ns();
  g_stop_signalled = 1;
  atomic_store(&m->srv->draining, 1);
  /* No generation may change while the workers stop: a reload in progress finishes first. Then
   * the live generation's drain delay applies (it is reloadable), not the one at start. */
  lh_reloader_stop(m->srv->reloader);
  const lh_config_t *live = lh_reloader_final_config(m->srv->reloader);
  int drain_ms = live ? live->drain_delay_ms : m->srv->cfg->drain_delay_ms;
  lh_info("received %s: draining for %d ms, then stopping",
          signum == SIGTERM  ? "SIGTERM"
          : signum == SIGINT ? "SIGINT"
                             : "SIGQUIT",
          drain_ms);
  uv_timer_start(&m->drain, on_drained, (uint64_t)drain_ms, 0);
}

static void on_sighup(uv_signal_t *s, int signum) {
  lh_main_t *m = s->data;
  (void)signum;
  if (m->signalled)
    return; /* stopping */
  lh_info("received SIGHUP: reloading the scripts and the configuration");
  lh_reload_request(m->srv->reloader, "signal");
}

/* SIGUSR1, the logrotate convention: the log files are opened again at their paths. */
static void on_reopen_logs(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  char err[1300];
  if (lh_log_reopen(err, sizeof(err)) != 0)
    lh_error("SIGUSR1: %s", err);
  else
    lh_info("received SIGUSR1: log files reopened");
}

int lh_server_run(lh_server_t *srv) {
  uv_loop_t loop;
  lh_main_t m = {0};
  m.srv = srv;
  uv_loop_init(&loop);
  uv_signal_init(&loop, &m.sigterm);
  uv_signal_init(&loop, &m.sigint);
  uv_signal_init(&loop, &m.sigquit);
  uv_signal_init(&loop, &m.sighup);
  uv_timer_init(&loop, &m.drain);
  m.sigterm.data = m.sigint.data = m.sigquit.data = m.sighup.data = m.drain.data = &m;
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigquit, on_signal, SIGQUIT);
  uv_signal_start(&m.sighup, on_sighup, SIGHUP);
  uv_signal_init(&loop, &m.sigusr1);
  m.sigusr1.data = &m;
  uv_signal_start(&m.sigusr1, on_reopen_logs, SIGUSR1);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  for (int i = 0; i < srv->nworkers; i++) {
    uv_thread_join(&srv->workers[i].thread);
    uv_sem_destroy(&srv->workers[i].started);
    uv_mutex_destroy(&srv->workers[i].mail_mu);
  }
  free(srv->workers);
  srv->workers = NULL;
  lh_docs_free(srv->docs);
  srv->docs = NULL;
  lh_info("luahost stopped");
  return 0;
}

void lh_server_cleanup(lh_server_t *srv) {
  lh_reloader_free(srv->reloader);
  srv->reloader = NULL;
  lh_gen_unref(srv->gen0);
  srv->gen0 = NULL;
}
