/* admin.h: the admin listener's reload endpoint (docs/operations.md, "The admin listener"):
 *   GET  /admin/reload   the reload status (reload.h) in the envelope, 200
 *   POST /admin/reload   a reload; answers once its outcome is known: 200 when the new generation
 *                        is live, 422 with the status (its last_error) when it was rejected, 503
 *                        when the host is stopping or too many reloads wait
 * The waiting happens on a thread of the "admin" pool, never on the worker's loop. The connection
 * (conn.c) checks the admin token and answers /healthz, /readyz and /metrics (endpoints.c). */
#ifndef LH_ADMIN_H
#define LH_ADMIN_H

#include "server.h"
#include "vm.h"

/* 1 when path (query excluded) is the reload endpoint. */
int lh_admin_is_reload(const char *path, size_t len);
/* Answers ex (method: GET, HEAD or POST; the caller answers 405 for others): fills its response
 * and calls ex->done, at once for GET and HEAD, after the reload for POST. */
void lh_admin_reload(lh_worker_t *w, lh_exchange_t *ex, int method);

#endif
