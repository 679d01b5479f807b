/* reload.c: the reload thread, its watcher and the reload status (see reload.h). */
#include "reload.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "candidate.h"
#include "lh.h"
#include "log.h"
#include "metrics.h"
#include "register.h"
#include "server.h"
#include "timefmt.h"
#include "vm.h"
#include "watch.h"

/* The watcher waits for this long without events before it looks at the tree. */
#define LH_RELOAD_QUIET_MS 300
#define LH_RELOAD_HISTORY 16

/* ---- generations ---- */

struct lh_gen_s {
  atomic_int refs;
  lh_config_t cfg;
};

lh_gen_t *lh_gen_new(const lh_config_t *cfg) {
  lh_gen_t *g = malloc(sizeof(*g));
  if (!g)
    return NULL;
  atomic_init(&g->refs, 1);
  memcpy(&g->cfg, cfg, sizeof(*cfg));
  return g;
}

const lh_config_t *lh_gen_config(const lh_gen_t *g) {
  return &g->cfg;
}

void lh_gen_ref(lh_gen_t *g) {
  atomic_fetch_add(&g->refs, 1);
}

void lh_gen_unref(lh_gen_t *g) {
  if (g && atomic_fetch_sub(&g->refs, 1) == 1) {
    /* secrets were copied into the configuration: wipe them with it */
    sodium_memzero(&g->cfg, sizeof(g->cfg));
    free(g);
  }
}

/* ---- the reloader ---- */

typedef struct {
  char at[32];
  char trigger[64];
  int ok;
  char generation[17];
  char error[1024];
  double duration_ms;
} lh_reload_entry_t;

struct lh_reloader_s {
  lh_server_t *srv;
  char config_path[1024]; /* empty: the default search */
  uv_thread_t thread;
  uv_loop_t loop; /* the reload thread's: the kick, the stop and the watcher */
  uv_async_t kick, stop;
  lh_watch_t *watch;
  /* Owned by the reload thread. */
  lh_gen_t *live;
  char rejected[17]; /* the script hash of the last rejected candidate, for the watcher */
  /* Shared: under mu. */
  uv_mutex_t mu;
  uv_cond_t cond;
  unsigned long long requested, done; /* reload requests made and served */
  char pending_trigger[64];           /* triggers waiting for the next reload ("signal+api") */
  int last_ok;
  char live_id[17];
  char live_since[32];
  char last_error[1024];
  char restart_required[1024]; /* "listen, workers": options changed but kept until a restart */
  lh_reload_entry_t history[LH_RELOAD_HISTORY];
  int nhistory, history_next;
  unsigned long long n_ok, n_failed;
  int waiters; /* callers blocked in lh_reload_run (a count for the status; nothing waits on it) */
  int stopped; /* lh_reloader_stop ran: waiters return at once */
  lh_candidate_cancel_t cancel; /* stops a validation in progress when the host stops */
  int joined;                   /* the reload thread was joined (main thread only) */
};

static _Atomic(lh_reloader_t *) g_reloader;

lh_reloader_t *lh_reloader_global(void) {
  return atomic_load(&g_reloader);
}

static void add_trigger(lh_reloader_t *r, const char *trigger) {
  size_t len = strlen(r->pending_trigger);
  if (strstr(r->pending_trigger, trigger))
    return;
  snprintf(r->pending_trigger + len, sizeof(r->pending_trigger) - len, "%s%s", len ? "+" : "",
           trigger);
}

void lh_reload_request(lh_reloader_t *r, const char *trigger) {
  uv_mutex_lock(&r->mu);
  if (!r->stopped) {
    r->requested++;
    add_trigger(r, trigger);
    uv_async_send(&r->kick);
  }
  uv_mutex_unlock(&r->mu);
}

static void status_locked(lh_reloader_t *r, lh_buf_t *b);

int lh_reload_run(lh_reloader_t *r, const char *trigger, lh_buf_t *out) {
  uv_mutex_lock(&r->mu);
  unsigned long long mine = ++r->requested;
  add_trigger(r, trigger);
  r->waiters++;
  if (!r->stopped)
    uv_async_send(&r->kick); /* under the lock: see lh_reloader_stop */
  while (r->done < mine && !r->stopped)
    uv_cond_wait(&r->cond, &r->mu);
  /* Stopping before this caller's reload ran: nothing was built, so nothing was rejected. */
  int ok = r->done < mine ? -1 : r->last_ok;
  status_locked(r, out);
  r->waiters--;
  uv_cond_broadcast(&r->cond);
  uv_mutex_unlock(&r->mu);
  return ok;
}

void lh_reload_live_id(lh_reloader_t *r, char out[17]) {
  uv_mutex_lock(&r->mu);
  memcpy(out, r->live_id, 17);
  uv_mutex_unlock(&r->mu);
}

void lh_reload_counts(lh_reloader_t *r, unsigned long long *ok, unsigned long long *failed) {
  uv_mutex_lock(&r->mu);
  *ok = r->n_ok;
  *failed = r->n_failed;
  uv_mutex_unlock(&r->mu);
}

static void put_str(lh_buf_t *b, const char *key, const char *value, int comma) {
  lh_buf_printf(b, "%s\"%s\":", comma ? "," : "", key);
  if (value && value[0])
    lh_buf_put_json_string(b, value, strlen(value));
  else
    lh_buf_puts(b, "null");
}

void lh_reload_status(lh_reloader_t *r, lh_buf_t *b) {
  uv_mutex_lock(&r->mu);
  status_locked(r, b);
  uv_mutex_unlock(&r->mu);
}

static void status_locked(lh_reloader_t *r, lh_buf_t *b) {
  lh_buf_puts(b, "{");
  put_str(b, "generation", r->live_id, 0);
  put_str(b, "live_since", r->live_since, 1);
  lh_buf_printf(b, ",\"reloads\":{\"ok\":%llu,\"failed\":%llu}", r->n_ok, r->n_failed);
  put_str(b, "last_error", r->last_error, 1);
  lh_buf_puts(b, ",\"restart_required\":[");
  const char *p = r->restart_required;
  for (int first = 1; *p;) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    lh_buf_puts(b, first ? "" : ",");
    lh_buf_put_json_string(b, p, n);
    first = 0;
    p += n;
    while (*p == ',' || *p == ' ')
      p++;
  }
  lh_buf_puts(b, "],\"history\":[");
  for (int i = 0; i < r->nhistory; i++) {
    int k = (r->history_next - 1 - i + LH_RELOAD_HISTORY) % LH_RELOAD_HISTORY;
    const lh_reload_entry_t *e = &r->history[k];
    lh_buf_puts(b, i ? ",{" : "{");
    put_str(b, "at", e->at, 0);
    put_str(b, "trigger", e->trigger, 1);
    put_str(b, "result", e->ok ? "ok" : "failed", 1);
    put_str(b, "generation", e->generation, 1);
    put_str(b, "error", e->error, 1);
    lh_buf_printf(b, ",\"duration_ms\":%.1f}", e->duration_ms);
  }
  lh_buf_puts(b, "]}");
}

/* ---- one reload (on the reload thread) ---- */

typedef struct {
  char *names;
  size_t len;
} lh_names_t;

static void on_fixed(const char *name, int reloadable, void *ud) {
  lh_names_t *n = ud;
  (void)reloadable;
  size_t used = strlen(n->names);
  snprintf(n->names + used, n->len - used, "%s%s", used ? ", " : "", name);
}

/* While the host's first on_start hooks have not succeeded (/readyz: starting), a reload runs
 * them in its candidate's validation, whatever changed: its commit marks the host started
 * (lh_server_commit). Worker 0 may be running its own attempt: this waits for it (srv->hooks_busy)
 * and returns 1 when this reload now owns the hooks (it clears the flag), 0 when they already
 * succeeded or the host is stopping. */
static int take_start_hooks(lh_reloader_t *r) {
  lh_server_t *srv = r->srv;
  for (;;) {
    if (atomic_load(&srv->started))
      return 0;
    int idle = 0;
    if (atomic_compare_exchange_strong(&srv->hooks_busy, &idle, 1)) {
      if (!atomic_load(&srv->started))
        return 1;
      atomic_store(&srv->hooks_busy, 0); /* worker 0's attempt succeeded just before */
      return 0;
    }
    if (lh_candidate_cancelled(&r->cancel))
      return 0; /* the validation that follows is rejected at once */
    uv_sleep(10);
  }
}

/* Builds, validates, prepares and commits one candidate. On failure writes why into err. */
static int reload_once(lh_reloader_t *r, char *generation, char *err, size_t errlen, char *restart,
                       size_t restartlen) {
  lh_server_t *srv = r->srv;
  const lh_config_t *live = lh_gen_config(r->live);
  lh_config_t *cfg = malloc(sizeof(*cfg));
  lh_script_set_t set = {0};
  lh_vm_t **vms = calloc((size_t)srv->nworkers, sizeof(*vms));
  lh_gen_t *gen = NULL;
  char why[1024] = "";
  int owner = 0; /* this reload runs the first on_start hooks (take_start_hooks) */
  int rc = cfg && vms ? 0 : LH_ENOMEM;
  if (rc == 0 &&
      (rc = lh_config_load(cfg, r->config_path[0] ? r->config_path : NULL, why, sizeof(why))) != 0)
    snprintf(err, errlen, "configuration: %s", why);
  if (rc == 0) {
    /* Options that need a restart keep their live values; the status names them. */
    lh_names_t names = {restart, restartlen};
    restart[0] = '\0';
    lh_config_keep_fixed(cfg, live, on_fixed, &names);
    if (live->admin_token[0] && !cfg->admin_token[0]) {
      /* An empty or missing token file must not silently open the admin listener. */
      snprintf(err, errlen,
               "configuration: admin_token: a reload cannot remove the admin token "
               "(set it again; to run without one, restart without it)");
      rc = LH_EINVAL;
    }
    if (rc == 0 && ((rc = lh_config_check_secrets(cfg, why, sizeof(why))) != 0 ||
                    (rc = lh_modules_reload(cfg, 0, why, sizeof(why))) != 0))
      snprintf(err, errlen, "configuration: %s", why);
  }
  if (rc == 0 && (rc = lh_script_set_read(&set, cfg->scripts, why, sizeof(why))) != 0)
    snprintf(err, errlen, "scripts: %s", why);
  if (rc == 0) {
    memcpy(generation, set.generation, 17);
    static const char *const what[] = {"", "",
                                       "policy tests failed: ", "on_start hook failed: ", ""};
    /* The on_start hooks prepare the database for a generation's scripts and settings: they run
     * when either differs from the live generation's, not for a reload of the same tree and app
     * section (a SIGHUP, a secret rotated, a limit changed), which they already prepared; and
     * always while the live generation's own hooks have not succeeded yet (the host is not
     * ready): a commit marks the host ready (lh_server_commit), so it must follow hooks that
     * passed. */
    char live_id[17];
    lh_reload_live_id(r, live_id);
    owner = take_start_hooks(r);
    int hooks =
        owner || strcmp(set.generation, live_id) != 0 || strcmp(cfg->app_json, live->app_json) != 0;
    lh_candidate_stage_t stage =
        lh_candidate_validate(cfg, &set, hooks, &r->cancel, why, sizeof(why));
    if (stage != LH_CANDIDATE_OK) {
      snprintf(err, errlen, "%s%s", what[stage], why);
      rc = LH_EINVAL;
    }
  }
  if (rc == 0 && !(gen = lh_gen_new(cfg)))
    rc = LH_ENOMEM;
  /* Prepare: one VM per worker, from the same snapshot and the same configuration. They are
   * built here, off the workers' loops; each is handed to its worker at the commit. */
  for (int i = 0; rc == 0 && i < srv->nworkers; i++) {
    lh_worker_t *w = &srv->workers[i];
    rc = lh_vm_create_from(&vms[i], lh_gen_config(gen), &set, &w->loop, w->cq, why, sizeof(why));
    if (rc != 0)
      snprintf(err, errlen, "preparing worker %d: %s", i, why);
  }
  if (rc == 0) {
    /* Commit: nothing below can fail. */
    rc = lh_server_commit(srv, vms, gen); /* each worker takes a reference */
    if (rc != 0)
      snprintf(err, errlen, "committing: out of memory");
  }
  if (owner) /* after the commit marked the host started, or after any failure */
    atomic_store(&srv->hooks_busy, 0);
  if (rc == 0) {
    /* Live in every worker: what is process-wide follows. */
    lh_modules_reload(lh_gen_config(gen), 1, why, sizeof(why));
    lh_log_level_t level;
    if (lh_log_parse_level(lh_gen_config(gen)->log_level, &level) == 0)
      lh_log_set_level(level);
    lh_gen_unref(r->live);
    r->live = gen; /* the reload thread's reference */
    gen = NULL;
  } else {
    for (int i = 0; vms && i < srv->nworkers; i++)
      lh_vm_free(vms[i]);
    if (rc == LH_ENOMEM && !err[0])
      snprintf(err, errlen, "out of memory");
  }
  lh_gen_unref(gen);
  free(vms);
  lh_script_set_free(&set);
  if (cfg)
    sodium_memzero(cfg, sizeof(*cfg));
  free(cfg);
  return rc;
}

static void run_reload(lh_reloader_t *r) {
  char trigger[64], generation[17] = "", err[1024] = "", restart[1024] = "";
  uv_mutex_lock(&r->mu);
  unsigned long long target = r->requested;
  snprintf(trigger, sizeof(trigger), "%s", r->pending_trigger[0] ? r->pending_trigger : "watch");
  r->pending_trigger[0] = '\0';
  uv_mutex_unlock(&r->mu);

  unsigned long long t0 = lh_now_ns();
  int rc = reload_once(r, generation, err, sizeof(err), restart, sizeof(restart));
  double ms = (double)(lh_now_ns() - t0) / 1e6;
  char at[32];
  lh_time_format(lh_time_now_ms(), LH_TIME_ISO8601, at, sizeof(at));
  if (rc == 0) {
    r->rejected[0] = '\0';
    lh_info("reload (%s): generation %s is live (%.1f ms)%s%s", trigger, generation, ms,
            restart[0] ? "; changed options that need a restart (kept as they were): " : "",
            restart);
  } else {
    /* What the watcher remembers: a tree other than the live one that was rejected (its
     * scripts). A failure of the live tree itself (an on_start hook during an outage) or of the
     * configuration before the tree was read leaves nothing the watcher could see undone. */
    char live[17];
    lh_reload_live_id(r, live);
    if (generation[0] && strcmp(generation, live) != 0)
      memcpy(r->rejected, generation, 17);
    else
      r->rejected[0] = '\0';
    lh_error("reload (%s) rejected, the live generation keeps serving: %s", trigger, err);
  }
  uv_mutex_lock(&r->mu);
  lh_reload_entry_t *e = &r->history[r->history_next];
  r->history_next = (r->history_next + 1) % LH_RELOAD_HISTORY;
  if (r->nhistory < LH_RELOAD_HISTORY)
    r->nhistory++;
  snprintf(e->at, sizeof(e->at), "%s", at);
  snprintf(e->trigger, sizeof(e->trigger), "%s", trigger);
  e->ok = rc == 0;
  memcpy(e->generation, generation, 17);
  snprintf(e->error, sizeof(e->error), "%s", rc == 0 ? "" : err);
  e->duration_ms = ms;
  r->last_ok = rc == 0;
  lh_metrics_reload(rc == 0);
  if (rc == 0) {
    r->n_ok++;
    memcpy(r->live_id, generation, 17);
    snprintf(r->live_since, sizeof(r->live_since), "%s", at);
    r->last_error[0] = '\0';
    snprintf(r->restart_required, sizeof(r->restart_required), "%s", restart);
  } else {
    r->n_failed++;
    snprintf(r->last_error, sizeof(r->last_error), "%s", err);
  }
  r->done = target;
  uv_cond_broadcast(&r->cond);
  uv_mutex_unlock(&r->mu);
}

static void on_kick(uv_async_t *a) {
  lh_reloader_t *r = a->data;
  for (;;) {
    uv_mutex_lock(&r->mu);
    int due = r->requested > r->done && !r->stopped;
    uv_mutex_unlock(&r->mu);
    if (!due)
      return;
    run_reload(r);
  }
}

/* The tree was quiet after a change: reload when its content differs from the live generation
 * (and from the last rejected candidate: a broken file is reported once, not on every event). */
static void on_tree_quiet(void *ud) {
  lh_reloader_t *r = ud;
  lh_script_set_t set;
  char err[512];
  if (lh_script_set_read(&set, lh_gen_config(r->live)->scripts, err, sizeof(err)) != 0) {
    lh_warn("script watcher: %s", err);
    return;
  }
  char live[17];
  lh_reload_live_id(r, live);
  int back = strcmp(set.generation, live) == 0;
  int same = back || strcmp(set.generation, r->rejected) == 0;
  lh_script_set_free(&set);
  if (back && r->rejected[0]) {
    /* The broken edit was undone: what is on disk is what serves, so the status no longer shows
     * the rejected candidate's error (its history entry stays). */
    r->rejected[0] = '\0';
    uv_mutex_lock(&r->mu);
    r->last_error[0] = '\0';
    uv_mutex_unlock(&r->mu);
    lh_info("script watcher: the scripts on disk are the live generation %s again", live);
  }
  if (same)
    return;
  uv_mutex_lock(&r->mu);
  r->requested++;
  add_trigger(r, "watch");
  uv_mutex_unlock(&r->mu);
  on_kick(&r->kick);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void on_stop(uv_async_t *a) {
  lh_reloader_t *r = a->data;
  lh_watch_stop(r->watch);
  r->watch = NULL;
  uv_walk(&r->loop, close_walk, NULL);
}

/* Set on the reload thread: a script that asks for a reload from there (an on_start hook of a
 * candidate calling luahost.admin.reload) would wait for itself. */
static _Thread_local int t_on_reload_thread;

int lh_reload_on_this_thread(void) {
  return t_on_reload_thread;
}

static void reload_thread(void *arg) {
  lh_reloader_t *r = arg;
  t_on_reload_thread = 1;
  uv_run(&r->loop, UV_RUN_DEFAULT);
}

/* Undoes lh_reloader_start (the thread never ran): discard_state before the loop was
 * initialised, discard after. */
static void discard_state(lh_reloader_t *r) {
  lh_gen_unref(r->live);
  lh_candidate_cancel_destroy(&r->cancel);
  uv_cond_destroy(&r->cond);
  uv_mutex_destroy(&r->mu);
  free(r);
}

static void discard(lh_reloader_t *r) {
  lh_watch_stop(r->watch);
  uv_walk(&r->loop, close_walk, NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_loop_close(&r->loop);
  discard_state(r);
}

int lh_reloader_start(lh_reloader_t **out, lh_server_t *srv, const char *config_path,
                      lh_gen_t *live, const char *live_id, char *err, size_t errlen) {
  *out = NULL;
  lh_reloader_t *r = calloc(1, sizeof(*r));
  if (!r) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  r->srv = srv;
  snprintf(r->config_path, sizeof(r->config_path), "%s", config_path ? config_path : "");
  r->live = live;
  lh_gen_ref(live);
  memcpy(r->live_id, live_id, 17);
  lh_time_format(lh_time_now_ms(), LH_TIME_ISO8601, r->live_since, sizeof(r->live_since));
  r->last_ok = 1;
  uv_mutex_init(&r->mu);
  uv_cond_init(&r->cond);
  lh_candidate_cancel_init(&r->cancel);
  int rc = uv_loop_init(&r->loop);
  if (rc != 0) {
    snprintf(err, errlen, "the reload thread's loop: %s", uv_strerror(rc));
    discard_state(r);
    return LH_EIO;
  }
  r->kick.data = r->stop.data = r;
  if ((rc = uv_async_init(&r->loop, &r->kick, on_kick)) != 0 ||
      (rc = uv_async_init(&r->loop, &r->stop, on_stop)) != 0) {
    snprintf(err, errlen, "the reload thread's wake-up: %s", uv_strerror(rc));
    discard(r);
    return LH_EIO;
  }
  if (live->cfg.watch && lh_watch_start(&r->watch, &r->loop, live->cfg.scripts, LH_RELOAD_QUIET_MS,
                                        on_tree_quiet, r) != 0)
    lh_warn("cannot watch %s: scripts reload on SIGHUP or POST /admin/reload only",
            live->cfg.scripts);
  if (uv_thread_create(&r->thread, reload_thread, r) != 0) {
    snprintf(err, errlen, "cannot start the reload thread");
    discard(r);
    return LH_EIO;
  }
  atomic_store(&g_reloader, r);
  *out = r;
  return 0;
}

void lh_reloader_stop(lh_reloader_t *r) {
  if (!r || r->joined)
    return;
  /* Anyone waiting, or asking from now on, gets "not live" at once: the host is stopping. Under
   * the lock, so nobody sends to the kick handle once the thread may close it. */
  uv_mutex_lock(&r->mu);
  r->stopped = 1;
  uv_cond_broadcast(&r->cond);
  uv_mutex_unlock(&r->mu);
  /* A validation in progress (an on_start hook waiting for the database, or for ever) is cut
   * short: the join below then waits at most for its database jobs (db_timeout_ms). */
  lh_candidate_cancel(&r->cancel);
  uv_async_send(&r->stop);
  uv_thread_join(&r->thread);
  uv_loop_close(&r->loop);
  r->joined = 1;
}

const lh_config_t *lh_reloader_final_config(lh_reloader_t *r) {
  return r && r->joined ? lh_gen_config(r->live) : NULL;
}

void lh_reloader_free(lh_reloader_t *r) {
  if (!r)
    return;
  lh_reloader_stop(r);
  atomic_store(&g_reloader, NULL);
  lh_gen_unref(r->live);
  lh_candidate_cancel_destroy(&r->cancel);
  uv_cond_destroy(&r->cond);
  uv_mutex_destroy(&r->mu);
  free(r);
}
