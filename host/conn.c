/* conn.c: a connection's life (see conn.h).
 *
 * One request at a time: the parser pauses after each message, the request is routed and run,
 * its response written, and only then are the next pipelined bytes parsed, so answers always come
 * in order. While a request runs the connection goes on reading, into its pending bytes, up to
 * LH_PENDING_WHILE_BUSY: past that it stops and what the client pipelines stays in the kernel
 * (backpressure) until the response is out.
 * Timeouts: idle (between requests), header (from the first byte of a request, not re-armed per
 * read, so a slow drip of bytes cannot hold a connection: slowloris) and body (from the end of
 * the header block).
 * Lingering close: after a last answer that is an error (a 413 or 431 with the body or header
 * still coming, a 400, a 408), closing at once with unread input
 * makes the kernel send a reset, which can destroy the answer before the client reads it. The
 * connection half-closes instead (the answer, then FIN), and reads and discards what the client
 * still sends until it closes, for at most LH_LINGER_MS and LH_LINGER_BYTES; then it closes.
 * A lingering connection holds a socket, so lingering is bounded: the connection cap's 503 (a
 * refusal sent before any byte was read) never lingers, since lingering would keep the very
 * sockets the cap exists to limit, and at most LH_CONN_LINGER_MAX connections per worker linger
 * at once; past that an error answer closes at once.
 * The access log's duration runs from a request's first byte (from the accept for an answer
 * given before any byte), so answers given before a request is complete measure their own time. */
#include "conn.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <sodium.h>

#include "admin.h"
#include "lh.h"
#include "log.h"
#include "metrics.h"
#include "client.h"
#include "docs.h"
#include "endpoints.h"
#include "response.h"
#include "router.h"

/* Bounds of a lingering close: the time from the half-close, and the bytes discarded. */
/* What a connection reads ahead while its request runs (HANDLING, FINISHING): then reading
 * stops until the response is out. */
#define LH_PENDING_WHILE_BUSY (64u << 10)
#define LH_LINGER_MS 5000
#define LH_LINGER_BYTES (16u << 20)
/* The access line keeps at most this many bytes of the User-Agent header. */
#define LH_ACCESS_UA_MAX 256

/* A connection is in exactly one state; every transition goes through set_state, which asserts
 * that it is one of these:
 *
 *   READING --a request for the VM--> HANDLING --done--> FINISHING
 *   READING or FINISHING --response sent at once--> READING
 *   READING or FINISHING --response queued--> WRITING --written--> READING
 *   HANDLING --closed--> ORPHANED --done--> CLOSING
 *   READING, FINISHING or WRITING --closed (or the last response sent)--> CLOSING
 *   READING, FINISHING or WRITING --the last response, an error, sent--> LINGERING --> CLOSING
 *   CLOSING --both handles' close callbacks--> freed
 *
 * READING: parsing what is pending, reading when nothing is (timer: idle, header or body).
 * HANDLING: the VM runs an exchange that points at c->ex; the timer is idle; reading goes on
 *   into pending (nothing is parsed) until LH_PENDING_WHILE_BUSY bytes or the end of input.
 * FINISHING: the exchange called done; its response is sent from a zero timer on the next loop
 *   turn, never from inside done, so nothing re-enters the VM or this file's parse loop; reading
 *   as in HANDLING.
 * WRITING: one response is queued in uv_write (the send timeout runs); nothing else is parsed or
 *   written until it completes. At most one write is ever in flight.
 * ORPHANED: closed while the VM still holds c->ex; the handles close when done is called.
 * LINGERING: the write side is shut down (after the answer); input is read and discarded until
 *   the client closes, LH_LINGER_BYTES were read or the timer (LH_LINGER_MS) fires.
 * CLOSING: uv_close was called; the memory is freed when both handles' callbacks ran. */
typedef enum {
  LH_CONN_READING = 1,
  LH_CONN_HANDLING,
  LH_CONN_FINISHING,
  LH_CONN_WRITING,
  LH_CONN_ORPHANED,
  LH_CONN_LINGERING,
  LH_CONN_CLOSING
} lh_conn_state_t;

/* Flags orthogonal to the state. */
enum {
  LH_CONN_F_READ_ACTIVE = 1u << 0, /* uv_read_start is in effect */
  LH_CONN_F_LAST = 1u << 1,        /* close once the response being sent is out */
  LH_CONN_F_LINGER = 1u << 2,      /* the response being sent is an error: a last one lingers */
  LH_CONN_F_REFUSED = 1u << 3,     /* refused at the connection cap: close without lingering */
  LH_CONN_F_INTERIM = 1u << 4,     /* the response being sent is a 100: it never ends the conn */
  LH_CONN_F_ADMIN = 1u << 5        /* accepted by the admin listener (admin.h) */
};

typedef struct lh_conn_s {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;   /* accepted connections */
    uv_pipe_t pipe; /* lh_conn_open_fd: an already-connected socket (tests) */
  } io;
  uv_timer_t timer;
  uv_shutdown_t shutdown; /* LINGERING: the half-close */
  size_t lingered;        /* LINGERING: bytes read and discarded */
  lh_worker_t *w;
  lh_http_t http;
  lh_buf_t pending; /* received bytes not parsed yet (pipelining) */
  lh_exchange_t ex;
  struct lh_conn_s *prev, *next;
  lh_conn_state_t state;
  unsigned flags;
  int open_handles;
  lh_http_phase_t timer_phase; /* the phase the READING timer was armed for */
  unsigned requests;
  unsigned long long started_ns; /* the first byte of the current request, or the accept */
  char client[64];               /* the peer's address */
  char client_eff[64]; /* the client's address: the peer, or X-Forwarded-For via a trusted proxy */
  char request_id[80];
  /* The route template the current request matched ("/users/{id}"), a reserved path the host
   * answered ("/healthz"), or "" (no route): for logs and metrics, never the raw path. Copied at
   * dispatch: the generation that owns the template may be retired before the response is out. */
  char route[256];
  char cors_origin[256]; /* the request's Origin when it is allowed; empty otherwise */
} lh_conn_t;

/* The part of a response uv_write still has to send when uv_try_write could not send it all:
 * the rest of the head (copied: it is small) and the body (moved out of the exchange, not
 * copied, or copied when it lives elsewhere). */
typedef struct {
  uv_write_t req;
  lh_buf_t head;
  lh_buf_t body;
} lh_write_t;

static void process(lh_conn_t *c);
static void stop_reading(lh_conn_t *c);
static void on_timer(uv_timer_t *t);

/* 1 when from -> to is one of the transitions drawn above. */
static int transition_ok(lh_conn_state_t from, lh_conn_state_t to) {
  switch (to) {
  case LH_CONN_READING:
    return from == LH_CONN_READING || from == LH_CONN_FINISHING || from == LH_CONN_WRITING;
  case LH_CONN_HANDLING: return from == LH_CONN_READING;
  case LH_CONN_FINISHING: return from == LH_CONN_HANDLING;
  case LH_CONN_WRITING: return from == LH_CONN_READING || from == LH_CONN_FINISHING;
  case LH_CONN_ORPHANED: return from == LH_CONN_HANDLING;
  case LH_CONN_LINGERING:
    return from == LH_CONN_READING || from == LH_CONN_FINISHING || from == LH_CONN_WRITING;
  case LH_CONN_CLOSING: return from != LH_CONN_HANDLING && from != LH_CONN_CLOSING;
  }
  return 0;
}

static void set_state(lh_conn_t *c, lh_conn_state_t to) {
  assert(transition_ok(c->state, to));
  (void)transition_ok;
  c->state = to;
}

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
  assert(c->state == LH_CONN_CLOSING);
  if (--c->open_handles > 0)
    return;
  lh_http_free(&c->http);
  lh_buf_free(&c->pending);
  lh_buf_free(&c->ex.headers);
  lh_buf_free(&c->ex.body);
  atomic_fetch_sub(&c->w->srv->connections, 1);
  if (c->flags & LH_CONN_F_ADMIN)
    c->w->admin_conns--;
  free(c);
}

static void close_handles(lh_conn_t *c) {
  set_state(c, LH_CONN_CLOSING);
  uv_close(&c->io.handle, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Closes the connection. While the VM runs an exchange nothing is freed (the VM still points at
 * c->ex): the connection becomes ORPHANED and its done closes the handles. */
static void conn_close(lh_conn_t *c) {
  if (c->state == LH_CONN_LINGERING) {
    assert(c->w->lingering > 0);
    c->w->lingering--;
  }
  switch (c->state) {
  case LH_CONN_CLOSING:
  case LH_CONN_ORPHANED: return;
  case LH_CONN_HANDLING:
    unlink_conn(c);
    uv_timer_stop(&c->timer);
    stop_reading(c);
    set_state(c, LH_CONN_ORPHANED);
    return;
  case LH_CONN_READING:
  case LH_CONN_FINISHING:
  case LH_CONN_WRITING:
  case LH_CONN_LINGERING:
    unlink_conn(c);
    uv_timer_stop(&c->timer);
    stop_reading(c);
    close_handles(c); /* a write in flight is cancelled: on_write sees UV_ECANCELED */
    return;
  }
}

/* ---- lingering close ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void on_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  lh_conn_t *c = s->data;
  assert(c->state == LH_CONN_LINGERING);
  if (nread < 0) { /* the client closed (or the connection broke): nothing is left to protect */
    conn_close(c);
    return;
  }
  c->lingered += (size_t)nread;
  if (c->lingered > LH_LINGER_BYTES)
    conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  lh_conn_t *c = req->data;
  if (status < 0 && c->state == LH_CONN_LINGERING)
    conn_close(c);
}

/* The last response is written: half-close and drain when it was an error (input may be left
 * unread), else (or when the half-close cannot start, the worker is stopping, the connection was
 * refused at the cap, or LH_CONN_LINGER_MAX connections linger already) close at once. */
static void conn_end(lh_conn_t *c) {
  if (!(c->flags & LH_CONN_F_LINGER) || (c->flags & LH_CONN_F_REFUSED) || c->w->stopping ||
      c->w->lingering >= LH_CONN_LINGER_MAX) {
    conn_close(c);
    return;
  }
  uv_timer_stop(&c->timer);
  stop_reading(c);
  set_state(c, LH_CONN_LINGERING);
  c->w->lingering++;
  lh_buf_free(&c->pending);
  c->lingered = 0;
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, &c->io.stream, on_shutdown) != 0 ||
      uv_read_start(&c->io.stream, on_alloc, on_linger_read) != 0) {
    conn_close(c);
    return;
  }
  c->flags |= LH_CONN_F_READ_ACTIVE;
  uv_timer_start(&c->timer, on_timer, LH_LINGER_MS, 0);
}

/* ---- writing ---- */

/* 1 when the response just sent ends the connection: the last one, unless it was an interim 100
 * (sent mid-request: the final answer is still owed, even when shutdown marked the connection
 * last). Clears the interim mark. */
static int ends_connection(lh_conn_t *c) {
  int interim = (c->flags & LH_CONN_F_INTERIM) != 0;
  c->flags &= ~LH_CONN_F_INTERIM;
  return (c->flags & LH_CONN_F_LAST) && !interim;
}

static void on_write(uv_write_t *req, int status) {
  lh_write_t *wr = LH_CONTAINER_OF(req, lh_write_t, req);
  lh_conn_t *c = req->data;
  lh_buf_free(&wr->head);
  lh_buf_free(&wr->body);
  free(wr);
  if (c->state == LH_CONN_CLOSING)
    return;
  assert(c->state == LH_CONN_WRITING);
  uv_timer_stop(&c->timer);
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (ends_connection(c)) {
    conn_end(c);
    return;
  }
  set_state(c, LH_CONN_READING);
  process(c);
}

/* Copies the part of b (n bytes) past the first `skip` into dst; returns 0 or LH_ENOMEM. */
static int keep_rest(lh_buf_t *dst, const char *b, size_t n, size_t skip) {
  return skip < n ? lh_buf_append(dst, b + skip, n - skip) : 0;
}

/* Sends head (the worker's scratch buffer, left empty) and body_len bytes of body as two buffers.
 * What the kernel does not take at once is queued with uv_write: the head's rest is copied, the
 * body is moved out of *owner when given (no copy), else copied. Afterwards the connection is
 * READING, WRITING, or closed (after the last response, or on an error). */
static void conn_send(lh_conn_t *c, lh_buf_t *head, const char *body, size_t body_len,
                      lh_buf_t *owner) {
  assert(c->state == LH_CONN_READING || c->state == LH_CONN_FINISHING);
  if (head->failed) {
    lh_buf_reset(head);
    conn_close(c);
    return;
  }
  uv_buf_t bufs[2] = {uv_buf_init(head->data, (unsigned)head->len),
                      uv_buf_init((char *)body, (unsigned)body_len)};
  unsigned nbufs = body_len ? 2 : 1;
  size_t total = head->len + body_len;
  int n = uv_try_write(&c->io.stream, bufs, nbufs);
  if (n < 0 && n != UV_EAGAIN) {
    lh_buf_reset(head);
    conn_close(c);
    return;
  }
  size_t sent = n > 0 ? (size_t)n : 0;
  if (sent == total) {
    lh_buf_reset(head);
    if (ends_connection(c))
      conn_end(c);
    else
      set_state(c, LH_CONN_READING);
    return;
  }
  lh_write_t *wr = calloc(1, sizeof(*wr));
  int rc = wr ? keep_rest(&wr->head, head->data, head->len, sent) : LH_ENOMEM;
  size_t body_sent = sent > head->len ? sent - head->len : 0;
  if (rc == 0 && owner && owner->data == body && body_sent == 0) {
    wr->body = *owner; /* moved: the exchange grows a new body buffer next time */
    wr->body.len = body_len;
    lh_buf_init(owner);
  } else if (rc == 0) {
    rc = keep_rest(&wr->body, body, body_len, body_sent);
  }
  lh_buf_reset(head);
  if (rc != 0 || wr->head.failed || wr->body.failed) {
    if (wr) {
      lh_buf_free(&wr->head);
      lh_buf_free(&wr->body);
      free(wr);
    }
    conn_close(c);
    return;
  }
  uv_buf_t rest[2];
  unsigned nrest = 0;
  if (wr->head.len)
    rest[nrest++] = uv_buf_init(wr->head.data, (unsigned)wr->head.len);
  if (wr->body.len)
    rest[nrest++] = uv_buf_init(wr->body.data, (unsigned)wr->body.len);
  wr->req.data = c;
  if (uv_write(&wr->req, &c->io.stream, rest, nrest, on_write) != 0) {
    lh_buf_free(&wr->head);
    lh_buf_free(&wr->body);
    free(wr);
    conn_close(c);
    return;
  }
  set_state(c, LH_CONN_WRITING);
  stop_reading(c);
  /* A send timeout (nginx's send_timeout): a client that does not read its responses cannot hold
   * the connection and the queued bytes for ever. */
  uv_timer_start(&c->timer, on_timer, (uint64_t)c->w->cfg->idle_timeout_ms, 0);
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
  lh_metrics_request(c->http.req.method, c->route, status, lh_now_ns() - c->started_ns);
  if (!c->w->cfg->access_log || lh_log_get_level() > LH_LOG_INFO) {
    c->route[0] = '\0';
    c->ex.user_id[0] = '\0';
    return;
  }
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
  lh_buf_puts(&b, ",\"route\":");
  lh_buf_put_json_string(&b, c->route, strlen(c->route));
  lh_buf_printf(&b, ",\"status\":%d,\"bytes\":%zu,\"duration_ms\":%.3f", status, bytes, ms);
  if (c->ex.user_id[0]) {
    lh_buf_puts(&b, ",\"user_id\":");
    lh_buf_put_json_string(&b, c->ex.user_id, strlen(c->ex.user_id));
  }
  const lh_header_t *ua = r->method ? lh_request_header(r, "user-agent") : NULL;
  if (ua) {
    /* Bounded, and cut before a continuation byte so a long valid agent stays valid text. */
    size_t n = ua->value_len;
    if (n > LH_ACCESS_UA_MAX) {
      n = LH_ACCESS_UA_MAX;
      while (n > 0 && ((unsigned char)ua->value[n] & 0xC0) == 0x80)
        n--;
    }
    lh_buf_puts(&b, ",\"user_agent\":");
    lh_buf_put_json_string(&b, ua->value, n);
  }
  lh_buf_putc(&b, '}');
  if (!b.failed)
    lh_log_access(b.data, b.len);
  lh_buf_free(&b);
  c->route[0] = '\0';
  c->ex.user_id[0] = '\0';
}

/* ---- responses the host makes itself ---- */

static int keep_alive_after(lh_conn_t *c) {
  lh_worker_t *w = c->w;
  return c->http.req.keep_alive && !(c->flags & LH_CONN_F_LAST) && !w->stopping &&
         (w->cfg->max_requests_per_conn <= 0 ||
          c->requests < (unsigned)w->cfg->max_requests_per_conn);
}

/* owner: the buffer body lives in when it may be moved into a queued write (the exchange's), or
 * NULL. */
static void send_response(lh_conn_t *c, int status, const char *ctype, const char *extra,
                          size_t extra_len, const char *body, size_t body_len, lh_buf_t *owner) {
  lh_worker_t *w = c->w;
  lh_resp_t r = {0};
  r.status = status;
  r.content_type = ctype;
  r.request_id = c->request_id[0] ? c->request_id : NULL;
  r.keep_alive = keep_alive_after(c);
  if (!r.keep_alive)
    c->flags |= LH_CONN_F_LAST;
  if (status >= 400)
    c->flags |= LH_CONN_F_LINGER;
  else
    c->flags &= ~LH_CONN_F_LINGER;
  r.head = c->http.req.method && c->http.req.method_id == LH_M_HEAD;
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
  size_t wire_body = lh_response_head(&w->out, &r);
  lh_buf_free(&cors);
  access_log(c, status, body_len);
  conn_send(c, &w->out, body, wire_body, owner);
}

static void send_error(lh_conn_t *c, int status, const char *message, const char *code,
                       const char *extra) {
  lh_buf_t body;
  lh_buf_init(&body);
  lh_envelope_error(&body, message, code);
  if (body.failed)
    conn_close(c);
  else
    send_response(c, status, NULL, extra, extra ? strlen(extra) : 0, body.data, body.len, NULL);
  lh_buf_free(&body);
}

/* Answers with the error kind `name` (host/response.c: status, code, message, Retry-After). */
static void send_error_kind(lh_conn_t *c, const char *name) {
  const lh_error_kind_t *k = lh_error_kind(name);
  lh_buf_t body, extra;
  lh_buf_init(&body);
  lh_buf_init(&extra);
  lh_error_kind_write(k, &body, &extra);
  if (body.failed || extra.failed)
    conn_close(c);
  else
    send_response(c, k->status, NULL, extra.data, extra.len, body.data, body.len, NULL);
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

/* /openapi.json from the VM that serves this connection (its generation), /docs from the assets
 * read at start (docs.c). */
static void serve_docs(lh_conn_t *c, lh_reserved_t which, int method) {
  const lh_request_t *r = &c->http.req;
  const lh_header_t *inm = lh_request_header(r, "if-none-match");
  lh_docs_answer_t a;
  lh_docs_answer(&a, c->w->srv->docs, which, method, r->path, r->path_len, inm ? inm->value : NULL,
                 inm ? inm->value_len : 0, c->w->vm);
  if (a.allow)
    send_not_allowed(c, a.allow);
  else if (a.error_code)
    send_error(c, a.status, a.error_message, a.error_code, NULL);
  else
    send_response(c, a.status, a.content_type, a.extra, strlen(a.extra), a.body, a.body_len, NULL);
}

/* The reserved paths (router.h) belong to the host: endpoints.c and docs.c answer them. */
static int serve_reserved(lh_conn_t *c, int method) {
  const lh_request_t *r = &c->http.req;
  int which = lh_reserved_path(r->path, r->path_len);
  if (which < 0)
    return 0;
  int admin = (c->flags & LH_CONN_F_ADMIN) != 0;
  if (which == LH_RESERVED_ADMIN)
    return 0; /* the admin listener: serve_admin; the public one: the routes */
  if (!admin && which == LH_RESERVED_METRICS && !c->w->cfg->public_metrics) {
    /* It was public before the admin listener existed: say once where it went. */
    static atomic_int told;
    if (!atomic_exchange(&told, 1))
      lh_warn("GET /metrics on the public listener: metrics are served on the admin listener "
              "(admin_listen, %s); set public_metrics = true (LUAHOST_PUBLIC_METRICS=1) to keep "
              "them on the public one too",
              c->w->srv->cfg->admin_listen);
    send_error(c, 404, "Not found", "not_found", NULL);
    return 1;
  }
  snprintf(c->route, sizeof(c->route), "%s", lh_reserved_path_name((lh_reserved_t)which, NULL));
  if (which == LH_RESERVED_OPENAPI || which == LH_RESERVED_DOCS) {
    if (admin)
      return 0; /* the API's description is the clients' */
    serve_docs(c, (lh_reserved_t)which, method);
    return 1;
  }
  lh_endpoint_answer_t a;
  lh_endpoint_answer(&a, (lh_reserved_t)which, method, c->w->srv, lh_vm_generation(c->w->vm));
  if (a.body.failed)
    conn_close(c);
  else if (a.allow)
    send_not_allowed(c, a.allow);
  else
    send_response(c, a.status, a.content_type, a.extra, a.extra ? strlen(a.extra) : 0, a.body.data,
                  a.body.len, NULL);
  lh_buf_free(&a.body);
  return 1;
}

/* ---- dispatching a request ---- */

static void exchange_reset(lh_exchange_t *ex) {
  lh_buf_reset(&ex->headers);
  lh_buf_reset(&ex->body);
  ex->content_type[0] = '\0';
  ex->status = 0;
}

/* The zero timer started by on_exchange_done: the exchange's response goes out here, on a loop
 * turn of its own. */
static void finish_exchange(lh_conn_t *c) {
  lh_exchange_t *ex = &c->ex;
  assert(c->state == LH_CONN_FINISHING);
  send_response(c, ex->status, ex->content_type[0] ? ex->content_type : NULL, ex->headers.data,
                ex->headers.len, ex->body.data, ex->body.len, &ex->body);
  exchange_reset(ex);
  if (c->state == LH_CONN_CLOSING)
    return;
  lh_http_next(&c->http);
  if (c->state == LH_CONN_READING)
    process(c);
}

/* The VM calls this exactly once per exchange, possibly before lh_vm_dispatch returns: it only
 * records the fact and defers the rest to the loop. */
static void on_exchange_done(lh_exchange_t *ex) {
  lh_conn_t *c = LH_CONTAINER_OF(ex, lh_conn_t, ex);
  if (c->state == LH_CONN_ORPHANED) {
    close_handles(c); /* uv_close completes later, after the VM has returned */
    return;
  }
  assert(c->state == LH_CONN_HANDLING);
  set_state(c, LH_CONN_FINISHING);
  uv_timer_start(&c->timer, on_timer, 0, 0);
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

/* A CORS preflight: OPTIONS with Access-Control-Request-Method from an allowed origin. */
static int serve_preflight(lh_conn_t *c, unsigned allowed) {
  if (!c->cors_origin[0] || !lh_request_header(&c->http.req, "access-control-request-method"))
    return 0;
  lh_buf_t extra;
  lh_buf_init(&extra);
  methods_header(&extra, "Access-Control-Allow-Methods", allowed);
  lh_buf_puts(&extra, "Access-Control-Allow-Headers: Authorization, Content-Type, "
                      "X-Request-Id\r\nAccess-Control-Max-Age: 600\r\n");
  send_response(c, 204, NULL, extra.data, extra.len, NULL, 0, NULL);
  lh_buf_free(&extra);
  return 1;
}

/* "Authorization: Bearer <token>" with the admin token, compared in constant time. */
/* "Authorization: Bearer <token>" with the admin token. Both sides are hashed first, so the
 * comparison takes the same time whatever the lengths. */
static int admin_authorized(const char *token, const lh_request_t *req) {
  const lh_header_t *h = lh_request_header(req, "authorization");
  if (!h || h->value_len < 7 || strncasecmp(h->value, "Bearer ", 7) != 0)
    return 0;
  unsigned char a[32], b[32];
  crypto_generichash(a, sizeof a, (const unsigned char *)h->value + 7, h->value_len - 7, NULL, 0);
  crypto_generichash(b, sizeof b, (const unsigned char *)token, strlen(token), NULL, 0);
  return sodium_memcmp(a, b, sizeof a) == 0;
}

/* The admin listener trusts its callers by address, so a web page must not be able to use it
 * through a browser on an operator's machine: a request a browser sends for another site (it
 * carries Origin, or Sec-Fetch-Site other than "none") is refused (command-line clients and
 * scrapers send neither), and without an admin token so is one addressed to a host name other
 * than an address, localhost or the listener's own (DNS rebinding: a page's name resolved to
 * 127.0.0.1). With a token, any name may address it (a scraper's DNS name, a probe's host). */
static const char *admin_cross_site(const lh_conn_t *c, const lh_request_t *req) {
  const lh_header_t *h = lh_request_header(req, "origin");
  if (h)
    return "a request from a web page (Origin)";
  h = lh_request_header(req, "sec-fetch-site");
  if (h && !(h->value_len == 4 && memcmp(h->value, "none", 4) == 0))
    return "a request from a web page (Sec-Fetch-Site)";
  h = lh_request_header(req, "host");
  if (!h || c->w->cfg->admin_token[0])
    return NULL; /* with a token a rebinding page cannot get in: any name may address the host */
  const char *v = h->value;
  size_t n = h->value_len;
  if (n > 0 && v[0] == '[')
    return NULL; /* an IPv6 literal */
  const char *colon = memchr(v, ':', n);
  if (colon)
    n = (size_t)(colon - v);
  char name[256];
  if (n == 0 || n >= sizeof name)
    return "a Host that names no address";
  memcpy(name, v, n);
  name[n] = '\0';
  unsigned char addr[16];
  if (inet_pton(AF_INET, name, addr) == 1 || strcasecmp(name, "localhost") == 0 ||
      strcasecmp(name, c->w->srv->admin_host) == 0)
    return NULL;
  return "a Host other than an address, localhost or the admin listener's own";
}

static void begin_exchange(lh_conn_t *c);

/* A request on the admin listener: the token, then the host's endpoints and /admin/reload;
 * nothing of the scripts runs here. */
static void serve_admin(lh_conn_t *c, int method) {
  lh_worker_t *w = c->w;
  const lh_request_t *req = &c->http.req;
  const char *foreign = admin_cross_site(c, req);
  if (foreign) {
    lh_warn("admin listener: refused %s %.*s from %s: %s", req->method ? req->method : "?",
            (int)(req->path_len > 200 ? 200 : req->path_len), req->path ? req->path : "", c->client,
            foreign);
    send_error(c, 403, "The admin listener refuses requests from web pages and foreign hosts",
               "forbidden", NULL);
    return;
  }
  if (w->cfg->admin_token[0] && !admin_authorized(w->cfg->admin_token, req)) {
    send_error(c, 401, "The admin token is missing or wrong", "unauthorized",
               "WWW-Authenticate: Bearer\r\n");
    return;
  }
  if (serve_reserved(c, method))
    return;
  if (!lh_admin_is_reload(req->path, req->path_len)) {
    send_error(c, 404, "Not found", "not_found", NULL);
    return;
  }
  if (method != LH_M_GET && method != LH_M_HEAD && method != LH_M_POST) {
    send_not_allowed(c, (1u << LH_M_GET) | (1u << LH_M_HEAD) | (1u << LH_M_POST));
    return;
  }
  snprintf(c->route, sizeof(c->route), "/admin/reload");
  begin_exchange(c);
  lh_admin_reload(w, &c->ex, method);
}

/* The connection hands c->ex to whoever answers it (the VM, admin.c): HANDLING until done. */
static void begin_exchange(lh_conn_t *c) {
  lh_exchange_t *ex = &c->ex;
  ex->req = &c->http.req;
  ex->request_id = c->request_id;
  ex->client_addr = c->client_eff;
  ex->done = on_exchange_done;
  exchange_reset(ex);
  set_state(c, LH_CONN_HANDLING);
  /* Reading stays on: what arrives meanwhile (a pipelined request) is kept in pending, up to
   * LH_PENDING_WHILE_BUSY, and parsed once the response is out. Stopping and restarting it would
   * cost two epoll_ctl calls per request, as many system calls as the read and the write. */
}

/* Answers the request, or hands it to the VM (the connection is then HANDLING). */
static void handle_request(lh_conn_t *c) {
  lh_worker_t *w = c->w;
  const lh_request_t *req = &c->http.req;
  c->requests++;
  assign_request_id(c);
  const lh_config_t *cfg = w->cfg;
  lh_client_address(cfg, c->client, req, c->client_eff, sizeof(c->client_eff));
  if (c->flags & LH_CONN_F_ADMIN)
    c->cors_origin[0] = '\0'; /* never CORS on the admin listener */
  else
    lh_client_cors_origin(cfg, req, c->cors_origin, sizeof(c->cors_origin));
  int method = req->method_id;
  c->route[0] = '\0';
  if (c->flags & LH_CONN_F_ADMIN) {
    serve_admin(c, method);
    return;
  }
  if (serve_reserved(c, method))
    return;
  const lh_router_t *router = lh_vm_router(w->vm);
  lh_exchange_t *ex = &c->ex;
  unsigned allowed = 0;
  int rc = LH_ENOTFOUND;
  if (method >= 0)
    rc = lh_router_match(router, (lh_method_t)method, req->path, req->path_len, &ex->match,
                         &allowed);
  else if ((allowed = allowed_any(router, req)) != 0)
    rc = LH_EMETHOD;
  if (rc == LH_ENOTFOUND) {
    send_error(c, 404, "Not found", "not_found", NULL);
    return;
  }
  if (method == LH_M_OPTIONS && rc != LH_ENOTFOUND &&
      serve_preflight(c, rc == 0 ? allowed_any(router, req) : allowed))
    return;
  if (rc != 0) {
    if (method == LH_M_OPTIONS) {
      lh_buf_t extra;
      lh_buf_init(&extra);
      allow_header(&extra, allowed | (1u << LH_M_OPTIONS));
      send_response(c, 204, NULL, extra.data, extra.len, NULL, 0, NULL);
      lh_buf_free(&extra);
    } else {
      send_not_allowed(c, allowed);
    }
    return;
  }
  snprintf(c->route, sizeof(c->route), "%s", lh_vm_route_template(w->vm, ex->match.route_id));
  begin_exchange(c);
  lh_vm_dispatch(w->vm, ex);
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t) {
  lh_conn_t *c = t->data;
  switch (c->state) {
  case LH_CONN_FINISHING: finish_exchange(c); return;
  case LH_CONN_WRITING:
    /* The client stopped reading: a response has waited idle_timeout_ms to be written. */
    conn_close(c);
    return;
  case LH_CONN_LINGERING: conn_close(c); return;
  case LH_CONN_READING: break;
  case LH_CONN_HANDLING:
  case LH_CONN_ORPHANED:
  case LH_CONN_CLOSING: assert(0 && "the timer is stopped in this state"); return;
  }
  if (c->http.phase == LH_PHASE_IDLE) {
    conn_close(c);
    return;
  }
  c->flags |= LH_CONN_F_LAST;
  stop_reading(c);
  c->request_id[0] = '\0';
  assign_request_id(c);
  send_error(c, 408, "Request timeout", "request_timeout", NULL);
}

static void arm_timer(lh_conn_t *c) {
  const lh_config_t *cfg = c->w->cfg;
  assert(c->state == LH_CONN_READING);
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
  assert(c->state == LH_CONN_READING || c->state == LH_CONN_HANDLING ||
         c->state == LH_CONN_FINISHING);
  int busy = c->state != LH_CONN_READING;
  if (nread < 0) {
    if (busy) {
      /* The client hung up (or the connection broke) while its request runs: the response is
       * still attempted, and reading, started again after it, finds the end again. */
      stop_reading(c);
      return;
    }
    conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (lh_buf_append(&c->pending, buf->base, (size_t)nread) != 0) {
    conn_close(c);
    return;
  }
  if (!busy)
    process(c);
  else if (c->pending.len >= LH_PENDING_WHILE_BUSY)
    stop_reading(c); /* the rest waits in the socket; process() reads again when it needs to */
}

static void start_reading(lh_conn_t *c) {
  assert(c->state == LH_CONN_READING);
  if (!(c->flags & LH_CONN_F_READ_ACTIVE) && uv_read_start(&c->io.stream, on_alloc, on_read) == 0)
    c->flags |= LH_CONN_F_READ_ACTIVE;
}

static void stop_reading(lh_conn_t *c) {
  if (c->flags & LH_CONN_F_READ_ACTIVE) {
    uv_read_stop(&c->io.stream);
    c->flags &= ~LH_CONN_F_READ_ACTIVE;
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

/* Parses what is pending and answers complete requests, one at a time, while the connection
 * stays READING (a request handed to the VM, a queued write or a close ends the loop). */
static void process(lh_conn_t *c) {
  while (c->state == LH_CONN_READING) {
    if (c->pending.len == 0) {
      arm_timer(c);
      start_reading(c);
      return;
    }
    if (c->http.phase == LH_PHASE_IDLE)
      c->started_ns = lh_now_ns(); /* the first byte of a request: its clock starts */
    size_t used = 0;
    lh_http_result_t r = lh_http_feed(&c->http, c->pending.data, c->pending.len, &used);
    consume(c, used);
    switch (r) {
    case LH_HTTP_NEED_MORE:
      if (c->http.send_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->http.send_continue = 0;
        lh_buf_append(&c->w->out, cont, sizeof(cont) - 1);
        c->flags |= LH_CONN_F_INTERIM;
        conn_send(c, &c->w->out, NULL, 0, NULL);
        if (c->state != LH_CONN_READING)
          return;
      }
      arm_timer(c);
      start_reading(c);
      return;
    case LH_HTTP_CLOSE: conn_close(c); return;
    case LH_HTTP_ERROR:
      stop_reading(c);
      c->flags |= LH_CONN_F_LAST;
      c->request_id[0] = '\0';
      assign_request_id(c);
      send_error(c, c->http.err_status, c->http.err_msg, c->http.err_code, NULL);
      return;
    case LH_HTTP_REQUEST:
      uv_timer_stop(&c->timer);
      handle_request(c);
      if (c->state == LH_CONN_READING && c->http.phase == LH_PHASE_DONE)
        lh_http_next(&c->http);
      else if (c->state == LH_CONN_WRITING && c->http.phase == LH_PHASE_DONE)
        lh_http_next(&c->http); /* the host's own answer is queued: the request is over */
      break;
    }
  }
}

/* ---- accepting ---- */

static void describe_peer(lh_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->client[0] = '\0';
  if (uv_tcp_getpeername(&c->io.tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->client, sizeof(c->client));
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->client, sizeof(c->client));
}

/* Allocates a connection whose stream the caller initialises next (io.handle.data and the list
 * are set up here); NULL when out of memory. */
static lh_conn_t *conn_new(lh_worker_t *w) {
  lh_conn_t *c = calloc(1, sizeof(*c));
  if (!c)
    return NULL;
  c->w = w;
  c->state = LH_CONN_READING;
  c->started_ns =
      lh_now_ns(); /* an answer before any byte (the connection cap) measures from here */
  uv_timer_init(&w->loop, &c->timer);
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
  return c;
}

/* The stream is open: refuse it past max_connections, else start reading requests. */
static void conn_start(lh_conn_t *c) {
  lh_worker_t *w = c->w;
  int max = w->srv->cfg->max_connections;
  /* The admin listener has a cap of its own, not max_connections: operators must get in when
   * clients have filled the host, and its callers must not take the clients' descriptors. */
  int admin = (c->flags & LH_CONN_F_ADMIN) != 0;
  int loopback = strcmp(c->client, "127.0.0.1") == 0 || strcmp(c->client, "::1") == 0 ||
                 strcmp(c->client, "::ffff:127.0.0.1") == 0; /* a dual-stack listener's */
  if (admin ? w->admin_conns > LH_CONN_ADMIN_MAX && !loopback
            : max > 0 && atomic_load(&w->srv->connections) > max) {
    c->flags |= LH_CONN_F_LAST | LH_CONN_F_REFUSED;
    assign_request_id(c);
    send_error_kind(c, "too_many_connections");
    return;
  }
  process(c);
}

void lh_conn_on_connection(uv_stream_t *listener, int status) {
  lh_worker_t *w = listener->data;
  if (status < 0)
    return;
  lh_conn_t *c = conn_new(w);
  if (!c)
    return;
  if (listener == (uv_stream_t *)&w->admin) {
    c->flags |= LH_CONN_F_ADMIN;
    w->admin_conns++;
  }
  uv_tcp_init(&w->loop, &c->io.tcp); /* cannot fail for AF_UNSPEC on a live loop */
  c->io.handle.data = c;
  if (uv_accept(listener, &c->io.stream) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->io.tcp, 1);
  describe_peer(c);
  conn_start(c);
}

int lh_conn_open_fd(lh_worker_t *w, int fd) {
  lh_conn_t *c = conn_new(w);
  if (!c)
    return LH_ENOMEM;
  uv_pipe_init(&w->loop, &c->io.pipe, 0);
  c->io.handle.data = c;
  if (uv_pipe_open(&c->io.pipe, fd) != 0) {
    conn_close(c);
    return LH_EIO;
  }
  snprintf(c->client, sizeof(c->client), "local");
  conn_start(c);
  return 0;
}

void lh_conn_close_idle(lh_worker_t *w) {
  lh_conn_t *c = w->conns;
  while (c) {
    lh_conn_t *next = c->next;
    if ((c->state == LH_CONN_READING && c->http.phase == LH_PHASE_IDLE) ||
        c->state == LH_CONN_LINGERING)
      conn_close(c);
    else
      c->flags |= LH_CONN_F_LAST;
    c = next;
  }
}

void lh_conn_close_all(lh_worker_t *w) {
  while (w->conns)
    conn_close(w->conns);
}
