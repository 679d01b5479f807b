/* conn.h: one client connection's life: read, parse, dispatch, write, keep-alive, timeouts. */
#ifndef LH_CONN_H
#define LH_CONN_H

#include "server.h"

/* At most this many connections per worker linger (half-closed, draining the client's unread
 * input after an error answer) at once; past it an error answer closes at once. */
#define LH_CONN_LINGER_MAX 64
/* At most this many connections to the admin listener at once; past it one is refused (503),
 * unless it comes from loopback (an operator on the machine always gets in). */
#define LH_CONN_ADMIN_MAX 32

/* The listener's connection callback. */
void lh_conn_on_connection(uv_stream_t *listener, int status);
/* Serves HTTP on an already-connected stream socket (a socketpair end in the unit tests, which
 * drive the connection without TCP). The connection owns fd from here. 0, LH_ENOMEM or LH_EIO. */
int lh_conn_open_fd(lh_worker_t *w, int fd);
/* Shutdown: close connections that are idle now; busy ones close after their response. */
void lh_conn_close_idle(lh_worker_t *w);
/* Grace period over: close every connection. */
void lh_conn_close_all(lh_worker_t *w);

#endif
