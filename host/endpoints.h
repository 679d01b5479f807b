/* endpoints.h: the host's own answers on the reserved paths (router.h): /healthz (alive),
 * /readyz (ready: 503 while draining, starting, or while a binding's readiness check fails),
 * /metrics (Prometheus text) and 404 below /admin. GET and HEAD only; any other method is a 405.
 * No sockets here: the connection sends what lh_endpoint_answer describes. */
#ifndef LH_ENDPOINTS_H
#define LH_ENDPOINTS_H

#include "buf.h"
#include "router.h"
#include "server.h"

typedef struct {
  int status;
  const char *content_type; /* NULL: application/json */
  const char *extra;        /* header lines ("Retry-After: 1\r\n"), or NULL; may point at
                               extra_buf */
  char extra_buf[32];
  unsigned allow; /* non-zero: answer 405 with these methods (1 << lh_method_t) */
  lh_buf_t body;  /* the caller frees it; body.failed: out of memory */
} lh_endpoint_answer_t;

/* Fills a (its body initialised here) for the reserved path `which` asked with `method` (an
 * lh_method_t or LH_ENOTFOUND). generation: the live script generation's id. */
void lh_endpoint_answer(lh_endpoint_answer_t *a, lh_reserved_t which, int method, lh_server_t *srv,
                        const char *generation);

#endif
