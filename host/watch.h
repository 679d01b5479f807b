/* watch.h: watches a directory tree for changes (every directory under the root, new ones
 * included) and reports once the tree has been quiet for a while: a save that touches several
 * files, or an editor's write-rename dance, is one report. Runs on the loop it is given. */
#ifndef LH_WATCH_H
#define LH_WATCH_H

#include <uv.h>

#define LH_WATCH_MAX_DIRS 256

typedef struct lh_watch_s lh_watch_t;
typedef void (*lh_watch_cb)(void *ud);

/* Starts watching root; cb runs on loop after quiet_ms without events. LH_EIO when root cannot be
 * watched at all (the caller logs it; the host works without a watcher). */
int lh_watch_start(lh_watch_t **out, uv_loop_t *loop, const char *root, unsigned quiet_ms,
                   lh_watch_cb cb, void *ud);
/* Closes every handle; the memory goes in the close callbacks (run the loop afterwards). */
void lh_watch_stop(lh_watch_t *w);
/* Directories watched now (tests). */
int lh_watch_count(const lh_watch_t *w);

#endif
