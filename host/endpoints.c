/* endpoints.c: the host's own endpoints (see endpoints.h). */
#include "endpoints.h"

#include <stdio.h>

#include "lh.h"
#include "metrics.h"
#include "readiness.h"
#include "response.h"

static void error(lh_endpoint_answer_t *a, int status, const char *message, const char *code,
                  const char *extra) {
  a->status = status;
  a->extra = extra;
  lh_envelope_error(&a->body, message, code);
}

static void ok(lh_endpoint_answer_t *a, const char *message, const char *data, size_t len) {
  a->status = 200;
  lh_envelope(&a->body, 1, message, data, len);
}

/* A host condition from the one table of error kinds (response.c). */
static void error_kind(lh_endpoint_answer_t *a, const char *name) {
  const lh_error_kind_t *k = lh_error_kind(name);
  const char *extra = NULL;
  if (k->retry_after > 0) {
    snprintf(a->extra_buf, sizeof(a->extra_buf), "Retry-After: %d\r\n", k->retry_after);
    extra = a->extra_buf;
  }
  error(a, k->status, k->message, k->code, extra);
}

static void readyz(lh_endpoint_answer_t *a, lh_server_t *srv, const char *generation) {
  const char *message, *code;
  if (atomic_load(&srv->draining)) {
    error_kind(a, "draining");
  } else if (!atomic_load(&srv->started)) {
    error_kind(a, "starting");
  } else if (!lh_ready_ok(&message, &code)) {
    error(a, 503, message, code, "Retry-After: 1\r\n");
  } else {
    char data[200];
    int n =
        snprintf(data, sizeof(data), "{\"status\":\"ready\",\"generation\":\"%s\"}", generation);
    ok(a, "ready", data, (size_t)n);
  }
}

static void metrics(lh_endpoint_answer_t *a, lh_server_t *srv, const char *generation) {
  a->status = 200;
  a->content_type = "text/plain; version=0.0.4; charset=utf-8";
  lh_metrics_render(&a->body, srv, generation);
}

void lh_endpoint_answer(lh_endpoint_answer_t *a, lh_reserved_t which, int method, lh_server_t *srv,
                        const char *generation) {
  a->status = 0;
  a->content_type = NULL;
  a->extra = NULL;
  a->allow = 0;
  lh_buf_init(&a->body);
  if (which == LH_RESERVED_ADMIN) {
    error(a, 404, "Not found", "not_found", NULL);
    return;
  }
  if (method != LH_M_GET && method != LH_M_HEAD) {
    a->status = 405;
    a->allow = (1u << LH_M_GET) | (1u << LH_M_HEAD);
    return;
  }
  switch (which) {
  case LH_RESERVED_HEALTHZ: {
    static const char alive[] = "{\"status\":\"alive\"}";
    ok(a, "alive", alive, sizeof(alive) - 1);
    return;
  }
  case LH_RESERVED_READYZ: readyz(a, srv, generation); return;
  case LH_RESERVED_METRICS: metrics(a, srv, generation); return;
  case LH_RESERVED_ADMIN:
  case LH_RESERVED__COUNT: break;
  }
}
