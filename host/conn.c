/* conn.c: a connection's life (see conn.h).
 *
 * One request at a time: the parser pauses after each message, the request is routed and run,
 * its response written, and only then are the next pipelined bytes parsed, so answers always come
 * in order. While a request waits on a job the connection stops reading: bytes the client
 * pipelines meanwhile stay in the kernel (backpressure) instead of in our memory.
 * Timeouts: idle (between requests), header (from the first byte of a request, not re-armed per
 * read, so a slow drip of bytes cannot hold a connection: slowloris) and body (from the end of
 * the header block). */
#include "conn.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "log.h"
#include "response.h"
#include "router.h"

typedef struct lh_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  lh_worker_t *w;
  lh_http_t http;
  lh_buf_t pending; /* received bytes not parsed yet (pipelining) */
  lh_exchange_t ex;
  struct lh_conn_s *prev, *next;
  int open_handles;
  int handling;    /* an exchange is running */
  int in_dispatch; /* lh_vm_dispatch is on the stack */
  int ex_done;     /* the exchange completed while in_dispatch */
  int closing;
  int close_after_write;
  int writes; /* uv_write requests in flight */
  int reading;
  lh_http_phase_t timer_phase;
  unsigned requests;
  unsigned long long started_ns;
  char client[64];     /* the peer's address */
  char client_eff[64]; /* the client's address: the peer, or X-Forwarded-For via a trusted proxy */
  char request_id[80];
  char cors_origin[256]; /* the request's Origin when it is allowed; empty otherwise */
} lh_conn_t;

typedef struct {
  uv_write_t req;
  char *data;
} lh_write_t;

static void process(lh_conn_t *c);
static void stop_reading(lh_conn_t *c);
static void on_timer(uv_timer_t *t);

/* ---- closing ---- */

static void unlink_conn(lh_conn_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    c->w->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  lh_worker_check_stopped(c->w);
}

static void on_handle_closed(uv_handle_t *h) {
  lh_conn_t *c = h->data;
  if (--c->open_handles > 0)
    return;
  lh_http_free(&c->http);
  lh_buf_free(&c->pending);
  lh_buf_free(&c->ex.headers);
  lh_buf_free(&c->ex.body);
  atomic_fetch_sub(&c->w->srv->connections, 1);
  free(c);
}

/* Frees nothing while an exchange runs: the VM still points at c->ex. The exchange's completion
 * calls conn_close again. */
static void conn_close(lh_conn_t *c) {
  if (!c->closing) {
    c->closing = 1;
    unlink_conn(c);
    uv_timer_stop(&c->timer);
    uv_read_stop((uv_stream_t *)&c->tcp);
  }
  if (c->handling)
    return;
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  }
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status) {
  lh_write_t *wr = LH_CONTAINER_OF(req, lh_write_t, req);
  lh_conn_t *c = req->data;
  free(wr->data);
  free(wr);
  c->writes--;
  if (status < 0 || (c->close_after_write && c->writes == 0)) {
    conn_close(c);
    return;
  }
  if (c->writes == 0 && !c->closing && !c->handling)
    process(c);
}

/* Writes out (the worker's scratch buffer) and leaves it empty. */
static void conn_write(lh_conn_t *c, lh_buf_t *out) {
  if (c->closing || out->len == 0) {
    lh_buf_reset(out);
    return;
  }
  if (out->failed) {
    lh_buf_reset(out);
    conn_close(c);
    return;
  }
  size_t off = 0;
  if (c->writes == 0) {
    uv_buf_t b = uv_buf_init(out->data, (unsigned)out->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      lh_buf_reset(out);
      conn_close(c);
      return;
    }
    if (n > 0)
      off = (size_t)n;
  }
  if (off == out->len) {
    lh_buf_reset(out);
    if (c->close_after_write)
      conn_close(c);
    return;
  }
  lh_write_t *wr = malloc(sizeof(*wr));
  char *copy = wr ? malloc(out->len - off) : NULL;
  if (!copy) {
    free(wr);
    lh_buf_reset(out);
    conn_close(c);
    return;
  }
  memcpy(copy, out->data + off, out->len - off);
  wr->data = copy;
  wr->req.data = c;
  uv_buf_t b = uv_buf_init(copy, (unsigned)(out->len - off));
  lh_buf_reset(out);
  if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(copy);
    free(wr);
    conn_close(c);
    return;
  }
  /* A send timeout (nginx's send_timeout): a client that does not read its responses cannot hold
   * the connection and the queued bytes for ever. process() re-arms the usual timers once the
   * write completes. */
  if (c->writes++ == 0) {
    c->timer_phase = (lh_http_phase_t)-1;
    uv_timer_start(&c->timer, on_timer, (uint64_t)c->w->srv->cfg->idle_timeout_ms, 0);
  }
}

/* ---- request ids and access log ---- */

static int sane_request_id(const lh_header_t *h) {
  if (!h || h->value_len == 0 || h->value_len > 64)
    return 0;
  for (size_t i = 0; i < h->value_len; i++) {
    char ch = h->value[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_' || ch == '.'))
      return 0;
  }
  return 1;
}

/* Appends '-' and n in decimal; returns the new end. */
static char *put_dec(char *p, unsigned long long n) {
  char tmp[24];
  int len = 0;
  do {
    tmp[len++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  *p++ = '-';
  while (len)
    *p++ = tmp[--len];
  return p;
}

static void assign_request_id(lh_conn_t *c) {
  const lh_header_t *h = c->http.req.url ? lh_request_header(&c->http.req, "x-request-id") : NULL;
  if (sane_request_id(h)) {
    memcpy(c->request_id, h->value, h->value_len);
    c->request_id[h->value_len] = '\0';
    return;
  }
  /* "<process prefix>-<worker>-<counter>", formatted by hand: this runs for every request. */
  lh_worker_t *w = c->w;
  char *p = c->request_id;
  memcpy(p, w->srv->id_prefix, 8);
  p += 8;
  p = put_dec(p, (unsigned long long)w->id);
  p = put_dec(p, ++w->next_request);
  *p = '\0';
}

static void access_log(lh_conn_t *c, int status, size_t bytes) {
  lh_server_t *srv = c->w->srv;
  atomic_fetch_add(&srv->requests, 1);
  if (status >= 0 && status < LH_STATUS_SLOTS)
    atomic_fetch_add(&srv->status_count[status], 1);
  if (!srv->cfg->access_log || lh_log_get_level() > LH_LOG_INFO)
    return;
  const lh_request_t *r = &c->http.req;
  double ms = (double)(lh_now_ns() - c->started_ns) / 1e6;
  lh_buf_t b;
  lh_buf_init(&b);
  char ts[32];
  lh_log_timestamp(ts, sizeof(ts));
  lh_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"request_id\":", ts);
  lh_buf_put_json_string(&b, c->request_id, strlen(c->request_id));
  lh_buf_puts(&b, ",\"client\":");
  lh_buf_put_json_string(&b, c->client_eff[0] ? c->client_eff : c->client,
                         strlen(c->client_eff[0] ? c->client_eff : c->client));
  lh_buf_puts(&b, ",\"method\":");
  lh_buf_put_json_string(&b, r->method ? r->method : "", r->method ? strlen(r->method) : 0);
  lh_buf_puts(&b, ",\"path\":");
  lh_buf_put_json_string(&b, r->path ? r->path : "", r->path ? r->path_len : 0);
  lh_buf_printf(&b, ",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f}", status, bytes, ms);
  if (!b.failed)
    lh_log_json(LH_LOG_INFO, b.data, b.len);
  lh_buf_free(&b);
}

/* ---- responses the host makes itself ---- */

static int keep_alive_after(lh_conn_t *c) {
  lh_worker_t *w = c->w;
  return c->http.req.keep_alive && !c->close_after_write && !w->stopping &&
         (w->srv->cfg->max_requests_per_conn <= 0 ||
          c->requests < (unsigned)w->srv->cfg->max_requests_per_conn);
}

static void send_response(lh_conn_t *c, int status, const char *ctype, const char *extra,
                          size_t extra_len, const char *body, size_t body_len) {
  lh_worker_t *w = c->w;
  lh_resp_t r = {0};
  r.status = status;
  r.content_type = ctype;
  r.request_id = c->request_id[0] ? c->request_id : NULL;
  r.keep_alive = keep_alive_after(c);
  if (!r.keep_alive)
    c->close_after_write = 1;
  r.head = c->http.req.method && strcmp(c->http.req.method, "HEAD") == 0;
  lh_buf_t cors;
  lh_buf_init(&cors);
  if (c->cors_origin[0]) {
    lh_buf_append(&cors, extra, extra_len);
    lh_buf_puts(&cors, "Access-Control-Allow-Origin: ");
    lh_buf_puts(&cors, c->cors_origin);
    lh_buf_puts(&cors, "\r\nVary: Origin\r\n"
                       "Access-Control-Expose-Headers: X-Total-Count, X-Request-Id\r\n");
    extra = cors.data;
    extra_len = cors.len;
  }
  r.extra = extra;
  r.extra_len = extra_len;
  r.body = body;
  r.body_len = body_len;
  lh_response_serialize(&w->out, &r);
  lh_buf_free(&cors);
  access_log(c, status, body_len);
  conn_write(c, &w->out);
}

static void send_error(lh_conn_t *c, int status, const char *message, const char *code,
                       const char *extra) {
  lh_buf_t body;
  lh_buf_init(&body);
  lh_envelope_error(&body, message, code);
  send_response(c, status, NULL, extra, extra ? strlen(extra) : 0, body.data, body.len);
  lh_buf_free(&body);
}

/* Answers with the error kind `name` (host/response.c: status, code, message, Retry-After). */
static void send_error_kind(lh_conn_t *c, const char *name) {
  const lh_error_kind_t *k = lh_error_kind(name);
  lh_buf_t body, extra;
  lh_buf_init(&body);
  lh_buf_init(&extra);
  lh_error_kind_write(k, &body, &extra);
  send_response(c, k->status, NULL, extra.data, extra.len, body.data, body.len);
  lh_buf_free(&body);
  lh_buf_free(&extra);
}

/* Appends "Name: GET, HEAD, ...\r\n" for the methods in the bit set (1 << lh_method_t). */
static void methods_header(lh_buf_t *b, const char *name, unsigned allowed) {
  lh_buf_puts(b, name);
  lh_buf_puts(b, ": ");
  int first = 1;
  for (int m = 0; m < LH_M__COUNT; m++) {
    if (allowed & (1u << m)) {
      if (!first)
        lh_buf_puts(b, ", ");
      lh_buf_puts(b, lh_method_name((lh_method_t)m));
      first = 0;
    }
  }
  lh_buf_puts(b, "\r\n");
}

static void allow_header(lh_buf_t *b, unsigned allowed) {
  methods_header(b, "Allow", allowed);
}

static void send_not_allowed(lh_conn_t *c, unsigned allowed) {
  lh_buf_t extra;
  lh_buf_init(&extra);
  allow_header(&extra, allowed);
  send_error(c, 405, "Method not allowed", "method_not_allowed", extra.failed ? NULL : extra.data);
  lh_buf_free(&extra);
}

static int path_is(const lh_request_t *r, const char *p) {
  size_t n = strlen(p);
  return r->path_len == n && memcmp(r->path, p, n) == 0;
}

static void serve_metrics(lh_conn_t *c) {
  lh_server_t *srv = c->w->srv;
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "# HELP luahost_requests_total Requests answered, by status.\n"
                  "# TYPE luahost_requests_total counter\n");
  for (int s = 100; s < LH_STATUS_SLOTS; s++) {
    unsigned long long n = atomic_load(&srv->status_count[s]);
    if (n)
      lh_buf_printf(&b, "luahost_requests_total{status=\"%d\"} %llu\n", s, n);
  }
  lh_buf_printf(&b,
                "# HELP luahost_connections Open client connections.\n"
                "# TYPE luahost_connections gauge\nluahost_connections %d\n",
                atomic_load(&srv->connections));
  static const char *const pools[] = {"db", "hash"};
  lh_buf_puts(&b, "# HELP luahost_pool_queued Jobs waiting for a pool thread.\n"
                  "# TYPE luahost_pool_queued gauge\n");
  for (size_t i = 0; i < LH_ARRAY_SIZE(pools); i++) {
    lh_pool_t *p = lh_pools_find(pools[i]);
    if (p)
      lh_buf_printf(&b, "luahost_pool_queued{pool=\"%s\"} %u\n", pools[i], lh_pool_queued(p));
  }
  lh_buf_puts(&b, "# HELP luahost_pool_running Jobs being worked on by pool threads.\n"
                  "# TYPE luahost_pool_running gauge\n");
  for (size_t i = 0; i < LH_ARRAY_SIZE(pools); i++) {
    lh_pool_t *p = lh_pools_find(pools[i]);
    if (p)
      lh_buf_printf(&b, "luahost_pool_running{pool=\"%s\"} %u\n", pools[i], lh_pool_running(p));
  }
  lh_buf_printf(&b,
                "# HELP luahost_generation_info The live script generation.\n"
                "# TYPE luahost_generation_info gauge\n"
                "luahost_generation_info{id=\"%s\"} 1\n",
                lh_vm_generation(c->w->vm));
  send_response(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, 0, b.data, b.len);
  lh_buf_free(&b);
}

/* /healthz, /readyz, /metrics and /admin/ belong to the host: scripts cannot declare them. */
static int serve_reserved(lh_conn_t *c, int method) {
  const lh_request_t *r = &c->http.req;
  int is_admin = r->path_len >= 6 && memcmp(r->path, "/admin", 6) == 0 &&
                 (r->path_len == 6 || r->path[6] == '/');
  int which = path_is(r, "/healthz")   ? 1
              : path_is(r, "/readyz")  ? 2
              : path_is(r, "/metrics") ? 3
              : is_admin               ? 4
                                       : 0;
  if (!which)
    return 0;
  if (which == 4) {
    send_error(c, 404, "Not found", "not_found", NULL);
    return 1;
  }
  if (method != LH_M_GET && method != LH_M_HEAD) {
    send_not_allowed(c, (1u << LH_M_GET) | (1u << LH_M_HEAD));
    return 1;
  }
  if (which == 1) {
    static const char ok[] =
        "{\"message\":\"alive\",\"response_status\":true,\"response_data\":{\"status\":\"alive\"}}";
    send_response(c, 200, NULL, NULL, 0, ok, sizeof(ok) - 1);
  } else if (which == 2) {
    if (atomic_load(&c->w->srv->draining)) {
      send_error_kind(c, "draining");
    } else if (!atomic_load(&c->w->srv->started)) {
      send_error_kind(c, "starting");
    } else if (!atomic_load(&c->w->srv->db_ok)) {
      send_error_kind(c, "database_unavailable");
    } else {
      char body[200];
      int n = snprintf(body, sizeof(body),
                       "{\"message\":\"ready\",\"response_status\":true,\"response_data\":"
                       "{\"status\":\"ready\",\"generation\":\"%s\"}}",
                       lh_vm_generation(c->w->vm));
      send_response(c, 200, NULL, NULL, 0, body, (size_t)n);
    }
  } else {
    serve_metrics(c);
  }
  return 1;
}

/* ---- dispatching a request ---- */

static void exchange_reset(lh_exchange_t *ex) {
  lh_buf_reset(&ex->headers);
  lh_buf_reset(&ex->body);
  ex->content_type[0] = '\0';
  ex->status = 0;
}

static void finish_exchange(lh_conn_t *c) {
  lh_exchange_t *ex = &c->ex;
  c->handling = 0;
  if (c->closing) {
    conn_close(c);
    return;
  }
  send_response(c, ex->status, ex->content_type[0] ? ex->content_type : NULL, ex->headers.data,
                ex->headers.len, ex->body.data, ex->body.len);
  exchange_reset(ex);
  lh_http_next(&c->http);
}

static void on_exchange_done(lh_exchange_t *ex) {
  lh_conn_t *c = LH_CONTAINER_OF(ex, lh_conn_t, ex);
  if (c->in_dispatch) {
    c->ex_done = 1;
    return;
  }
  finish_exchange(c);
  if (!c->closing && c->writes == 0)
    process(c);
}

static unsigned allowed_any(const lh_router_t *r, const lh_request_t *req) {
  unsigned allowed = 0;
  lh_route_match_t m;
  for (int k = 0; k < LH_M__COUNT; k++) {
    unsigned a = 0;
    int rc = lh_router_match(r, (lh_method_t)k, req->path, req->path_len, &m, &a);
    if (rc == 0)
      allowed |= 1u << k;
  }
  return allowed;
}

static int is_trusted_proxy(const lh_config_t *cfg, const char *addr, size_t len) {
  for (int i = 0; i < cfg->n_trusted_proxies; i++)
    if (strlen(cfg->trusted_proxies[i]) == len && memcmp(cfg->trusted_proxies[i], addr, len) == 0)
      return 1;
  return 0;
}

static int valid_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
 * address in X-Forwarded-For that is not itself a trusted proxy (the left part of the header is
 * whatever the client chose to send, so only what trusted hops appended counts). */
static void resolve_client(lh_conn_t *c) {
  const lh_config_t *cfg = c->w->srv->cfg;
  snprintf(c->client_eff, sizeof(c->client_eff), "%s", c->client);
  if (cfg->n_trusted_proxies == 0 || !is_trusted_proxy(cfg, c->client, strlen(c->client)))
    return;
  const lh_header_t *xff = lh_request_header(&c->http.req, "x-forwarded-for");
  if (!xff)
    return;
  size_t end = xff->value_len;
  while (end > 0) {
    size_t start = end;
    while (start > 0 && xff->value[start - 1] != ',')
      start--;
    size_t a = start, b = end;
    while (a < b && (xff->value[a] == ' ' || xff->value[a] == '\t'))
      a++;
    while (b > a && (xff->value[b - 1] == ' ' || xff->value[b - 1] == '\t'))
      b--;
    char addr[64];
    if (b - a == 0 || b - a >= sizeof(addr))
      return; /* malformed: keep the proxy's address rather than guess */
    memcpy(addr, xff->value + a, b - a);
    addr[b - a] = '\0';
    if (!valid_ip(addr))
      return;
    snprintf(c->client_eff, sizeof(c->client_eff), "%s", addr);
    if (!is_trusted_proxy(cfg, addr, b - a))
      return;
    end = start > 0 ? start - 1 : 0;
  }
}

static void decide_cors(lh_conn_t *c) {
  const lh_config_t *cfg = c->w->srv->cfg;
  c->cors_origin[0] = '\0';
  if (cfg->n_cors_origins == 0)
    return;
  const lh_header_t *o = lh_request_header(&c->http.req, "origin");
  if (!o || o->value_len == 0 || o->value_len >= sizeof(c->cors_origin) ||
      !lh_header_is_valid("Origin", 6, o->value, o->value_len))
    return;
  for (int i = 0; i < cfg->n_cors_origins; i++) {
    const char *allowed = cfg->cors_origins[i];
    if (strcmp(allowed, "*") == 0 ||
        (strlen(allowed) == o->value_len && memcmp(allowed, o->value, o->value_len) == 0)) {
      memcpy(c->cors_origin, o->value, o->value_len);
      c->cors_origin[o->value_len] = '\0';
      return;
    }
  }
}

/* A CORS preflight: OPTIONS with Access-Control-Request-Method from an allowed origin. */
static int serve_preflight(lh_conn_t *c, unsigned allowed) {
  if (!c->cors_origin[0] || !lh_request_header(&c->http.req, "access-control-request-method"))
    return 0;
  lh_buf_t extra;
  lh_buf_init(&extra);
  methods_header(&extra, "Access-Control-Allow-Methods", allowed);
  lh_buf_puts(&extra, "Access-Control-Allow-Headers: Authorization, Content-Type, "
                      "X-Request-Id\r\nAccess-Control-Max-Age: 600\r\n");
  send_response(c, 204, NULL, extra.data, extra.len, NULL, 0);
  lh_buf_free(&extra);
  return 1;
}

/* Returns 1 when the exchange continues asynchronously. */
static int handle_request(lh_conn_t *c) {
  lh_worker_t *w = c->w;
  const lh_request_t *req = &c->http.req;
  c->requests++;
  c->started_ns = lh_now_ns();
  assign_request_id(c);
  resolve_client(c);
  decide_cors(c);
  int method = lh_method_parse(req->method, strlen(req->method));
  if (serve_reserved(c, method))
    return 0;
  const lh_router_t *router = lh_vm_router(w->vm);
  lh_exchange_t *ex = &c->ex;
  unsigned allowed = 0;
  int rc = LH_ENOTFOUND;
  if (method >= 0)
    rc = lh_router_match(router, (lh_method_t)method, req->path, req->path_len, &ex->match,
                         &allowed);
  else if ((allowed = allowed_any(router, req)) != 0)
    rc = LH_EINVAL;
  if (rc == LH_ENOTFOUND) {
    send_error(c, 404, "Not found", "not_found", NULL);
    return 0;
  }
  if (method == LH_M_OPTIONS && rc != LH_ENOTFOUND &&
      serve_preflight(c, rc == 0 ? allowed_any(router, req) : allowed))
    return 0;
  if (rc != 0) {
    if (method == LH_M_OPTIONS) {
      lh_buf_t extra;
      lh_buf_init(&extra);
      allow_header(&extra, allowed | (1u << LH_M_OPTIONS));
      send_response(c, 204, NULL, extra.data, extra.len, NULL, 0);
      lh_buf_free(&extra);
    } else {
      send_not_allowed(c, allowed);
    }
    return 0;
  }
  ex->req = req;
  ex->request_id = c->request_id;
  ex->client_addr = c->client_eff;
  ex->done = on_exchange_done;
  exchange_reset(ex);
  c->handling = 1;
  c->ex_done = 0;
  c->in_dispatch = 1;
  lh_vm_dispatch(w->vm, ex);
  c->in_dispatch = 0;
  if (c->ex_done) {
    finish_exchange(c);
    return 0;
  }
  return 1;
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t) {
  lh_conn_t *c = t->data;
  if (c->closing)
    return;
  if (c->writes > 0) {
    /* The client stopped reading: a response has waited idle_timeout_ms to be written. */
    conn_close(c);
    return;
  }
  if (c->handling)
    return;
  if (c->http.phase == LH_PHASE_IDLE) {
    conn_close(c);
    return;
  }
  c->close_after_write = 1;
  stop_reading(c);
  c->request_id[0] = '\0';
  assign_request_id(c);
  send_error(c, 408, "Request timeout", "request_timeout", NULL);
}

static void arm_timer(lh_conn_t *c) {
  const lh_config_t *cfg = c->w->srv->cfg;
  lh_http_phase_t phase = c->http.phase;
  if (phase == c->timer_phase && uv_is_active((uv_handle_t *)&c->timer))
    return;
  c->timer_phase = phase;
  int ms = phase == LH_PHASE_IDLE      ? cfg->idle_timeout_ms
           : phase == LH_PHASE_HEADERS ? cfg->header_timeout_ms
                                       : cfg->body_timeout_ms;
  uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- reading and parsing ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  lh_conn_t *c = h->data;
  *buf = uv_buf_init(c->w->read_buf, sizeof(c->w->read_buf));
}

static void start_reading(lh_conn_t *c);

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  lh_conn_t *c = s->data;
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (lh_buf_append(&c->pending, buf->base, (size_t)nread) != 0) {
    conn_close(c);
    return;
  }
  process(c);
}

static void start_reading(lh_conn_t *c) {
  if (!c->reading && !c->closing) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
      c->reading = 1;
  }
}

static void stop_reading(lh_conn_t *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

static void consume(lh_conn_t *c, size_t n) {
  if (n >= c->pending.len) {
    lh_buf_reset(&c->pending);
  } else {
    memmove(c->pending.data, c->pending.data + n, c->pending.len - n);
    c->pending.len -= n;
  }
}

/* Parses what is pending and answers complete requests, one at a time. */
static void process(lh_conn_t *c) {
  while (!c->closing && !c->handling && c->writes == 0) {
    if (c->pending.len == 0) {
      arm_timer(c);
      start_reading(c);
      return;
    }
    size_t used = 0;
    lh_http_result_t r = lh_http_feed(&c->http, c->pending.data, c->pending.len, &used);
    consume(c, used);
    switch (r) {
    case LH_HTTP_NEED_MORE:
      if (c->http.send_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        lh_buf_append(&c->w->out, cont, sizeof(cont) - 1);
        c->http.send_continue = 0;
        conn_write(c, &c->w->out);
      }
      arm_timer(c);
      start_reading(c);
      return;
    case LH_HTTP_CLOSE: conn_close(c); return;
    case LH_HTTP_ERROR:
      stop_reading(c);
      c->close_after_write = 1;
      c->request_id[0] = '\0';
      assign_request_id(c);
      send_error(c, c->http.err_status, c->http.err_msg, c->http.err_code, NULL);
      return;
    case LH_HTTP_REQUEST:
      uv_timer_stop(&c->timer);
      if (handle_request(c)) {
        stop_reading(c);
        return;
      }
      if (!c->handling && !c->closing && c->http.phase == LH_PHASE_DONE)
        lh_http_next(&c->http);
      break;
    }
  }
  if (c->handling || c->writes)
    stop_reading(c);
}

/* ---- accepting ---- */

static void describe_peer(lh_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->client[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->client, sizeof(c->client));
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->client, sizeof(c->client));
}

void lh_conn_on_connection(uv_stream_t *listener, int status) {
  lh_worker_t *w = listener->data;
  if (status < 0)
    return;
  lh_conn_t *c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->w = w;
  if (uv_tcp_init(&w->loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  uv_timer_init(&w->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  atomic_fetch_add(&w->srv->connections, 1);
  lh_http_init(&c->http, &w->limits);
  lh_buf_init(&c->pending);
  lh_buf_init(&c->ex.headers);
  lh_buf_init(&c->ex.body);
  c->timer_phase = (lh_http_phase_t)-1;
  c->next = w->conns;
  if (w->conns)
    w->conns->prev = c;
  w->conns = c;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  describe_peer(c);
  int max = w->srv->cfg->max_connections;
  if (max > 0 && atomic_load(&w->srv->connections) > max) {
    c->close_after_write = 1;
    assign_request_id(c);
    send_error_kind(c, "too_many_connections");
    return;
  }
  process(c);
}

void lh_conn_close_idle(lh_worker_t *w) {
  lh_conn_t *c = w->conns;
  while (c) {
    lh_conn_t *next = c->next;
    if (!c->handling && c->writes == 0 && c->http.phase == LH_PHASE_IDLE)
      conn_close(c);
    else
      c->close_after_write = 1;
    c = next;
  }
}

void lh_conn_close_all(lh_worker_t *w) {
  while (w->conns)
    conn_close(w->conns);
}
