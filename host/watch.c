/* watch.c: a directory tree watcher with a quiet period (see watch.h).
 *
 * inotify (behind uv_fs_event) watches one directory, not its subdirectories, so every directory
 * of the tree gets a handle of its own. Any event restarts the quiet timer; when it fires the
 * tree is scanned again (directories created or removed meanwhile gain or lose their handle) and
 * the callback runs. Hidden directories are not watched, as the script reader skips them.
 *
 * A directory is known by its device and inode as well as its path: a deploy that replaces one
 * (rm -rf routes && mv routes.new routes) within a quiet period leaves the same path, but inotify
 * was watching the removed directory, so the rescan gives the new one a handle of its own. When the
 * root itself is missing at the end of a quiet period (a deploy between its rm and its mv), no
 * event can tell when it is back, so the watcher looks for it again every LH_WATCH_ROOT_RETRY_MS.
 */
#include "watch.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lh.h"
#include "log.h"

#define LH_WATCH_ROOT_RETRY_MS 1000

typedef struct {
  uv_fs_event_t h;
  lh_watch_t *owner;
  char *path;
  dev_t dev; /* the directory the handle watches (inotify follows the inode, not the path) */
  ino_t ino;
  int seen; /* found by the current scan */
} lh_watch_dir_t;

struct lh_watch_s {
  uv_loop_t *loop;
  char *root;
  unsigned quiet_ms;
  lh_watch_cb cb;
  void *ud;
  uv_timer_t quiet;
  lh_watch_dir_t *dirs[LH_WATCH_MAX_DIRS];
  int ndirs;
  int open_handles; /* the timer and every directory handle not yet closed */
  int stopping;
  int warned;    /* the directory limit was logged */
  int root_gone; /* the root was missing at the last look (logged once) */
};

static void maybe_free(lh_watch_t *w) {
  if (w->stopping && w->open_handles == 0) {
    free(w->root);
    free(w);
  }
}

static void dir_closed(uv_handle_t *h) {
  lh_watch_dir_t *d = h->data;
  lh_watch_t *w = d->owner;
  free(d->path);
  free(d);
  w->open_handles--;
  maybe_free(w);
}

static void on_quiet(uv_timer_t *t);

static void on_event(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name;
  (void)events;
  (void)status;
  lh_watch_dir_t *d = h->data;
  lh_watch_t *w = d->owner;
  if (!w->stopping)
    uv_timer_start(&w->quiet, on_quiet, w->quiet_ms, 0); /* restarts: quiet since the last event */
}

static int find_dir(lh_watch_t *w, const char *path) {
  for (int i = 0; i < w->ndirs; i++)
    if (strcmp(w->dirs[i]->path, path) == 0)
      return i;
  return -1;
}

static void drop_dir(lh_watch_t *w, int i) {
  lh_watch_dir_t *d = w->dirs[i];
  uv_fs_event_stop(&d->h);
  uv_close((uv_handle_t *)&d->h, dir_closed);
  w->dirs[i] = w->dirs[--w->ndirs];
}

static void add_dir(lh_watch_t *w, const char *path, const struct stat *st) {
  int i = find_dir(w, path);
  if (i >= 0 && w->dirs[i]->dev == st->st_dev && w->dirs[i]->ino == st->st_ino) {
    w->dirs[i]->seen = 1;
    return;
  }
  if (i >= 0)
    drop_dir(w, i); /* the path now names another directory: watch that one */
  if (w->ndirs == LH_WATCH_MAX_DIRS) {
    if (!w->warned++)
      lh_warn("script watcher: more than %d directories under %s: the rest are not watched "
              "(SIGHUP or POST /admin/reload still reload them)",
              LH_WATCH_MAX_DIRS, w->root);
    return;
  }
  lh_watch_dir_t *d = calloc(1, sizeof(*d));
  if (!d || !(d->path = strdup(path))) {
    free(d);
    return;
  }
  d->owner = w;
  d->dev = st->st_dev;
  d->ino = st->st_ino;
  d->seen = 1;
  uv_fs_event_init(w->loop, &d->h);
  d->h.data = d;
  w->open_handles++;
  if (uv_fs_event_start(&d->h, on_event, path, 0) != 0) {
    uv_close((uv_handle_t *)&d->h, dir_closed);
    return;
  }
  w->dirs[w->ndirs++] = d;
}

static void scan(lh_watch_t *w, const char *path, const struct stat *self, int depth) {
  add_dir(w, path, self);
  if (depth >= 16)
    return;
  DIR *dir = opendir(path);
  if (!dir)
    return;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    char sub[4096];
    int n = snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
    struct stat st;
    if (n < 0 || (size_t)n >= sizeof(sub) || stat(sub, &st) != 0 || !S_ISDIR(st.st_mode))
      continue;
    scan(w, sub, &st, depth + 1);
  }
  closedir(dir);
}

/* Rescans the tree: new directories get a handle, vanished ones lose theirs. */
static void rescan(lh_watch_t *w) {
  for (int i = 0; i < w->ndirs; i++)
    w->dirs[i]->seen = 0;
  struct stat st;
  if (stat(w->root, &st) == 0 && S_ISDIR(st.st_mode))
    scan(w, w->root, &st, 0);
  int k = 0;
  for (int i = 0; i < w->ndirs; i++) {
    lh_watch_dir_t *d = w->dirs[i];
    if (d->seen) {
      w->dirs[k++] = d;
    } else {
      uv_fs_event_stop(&d->h);
      uv_close((uv_handle_t *)&d->h, dir_closed);
    }
  }
  w->ndirs = k;
}

static void on_quiet(uv_timer_t *t) {
  lh_watch_t *w = t->data;
  if (w->stopping)
    return;
  struct stat st;
  if (stat(w->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    if (!w->root_gone++)
      lh_warn("script watcher: %s is gone; looking for it again every %d ms", w->root,
              LH_WATCH_ROOT_RETRY_MS);
    uv_timer_start(&w->quiet, on_quiet, LH_WATCH_ROOT_RETRY_MS, 0);
    return;
  }
  if (w->root_gone) {
    w->root_gone = 0;
    lh_info("script watcher: %s is back", w->root);
  }
  rescan(w);
  w->cb(w->ud);
}

static void timer_closed(uv_handle_t *h) {
  lh_watch_t *w = h->data;
  w->open_handles--;
  maybe_free(w);
}

int lh_watch_start(lh_watch_t **out, uv_loop_t *loop, const char *root, unsigned quiet_ms,
                   lh_watch_cb cb, void *ud) {
  *out = NULL;
  struct stat st;
  if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
    return LH_EIO;
  lh_watch_t *w = calloc(1, sizeof(*w));
  if (!w || !(w->root = strdup(root))) {
    free(w);
    return LH_ENOMEM;
  }
  w->loop = loop;
  w->quiet_ms = quiet_ms;
  w->cb = cb;
  w->ud = ud;
  uv_timer_init(loop, &w->quiet);
  w->quiet.data = w;
  w->open_handles = 1;
  scan(w, root, &st, 0);
  if (w->ndirs == 0) {
    lh_watch_stop(w);
    return LH_EIO;
  }
  *out = w;
  return 0;
}

void lh_watch_stop(lh_watch_t *w) {
  if (!w || w->stopping)
    return;
  w->stopping = 1;
  for (int i = 0; i < w->ndirs; i++) {
    uv_fs_event_stop(&w->dirs[i]->h);
    uv_close((uv_handle_t *)&w->dirs[i]->h, dir_closed);
  }
  w->ndirs = 0;
  uv_timer_stop(&w->quiet);
  uv_close((uv_handle_t *)&w->quiet, timer_closed);
}

int lh_watch_count(const lh_watch_t *w) {
  return w->ndirs;
}
