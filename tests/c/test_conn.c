/* test_conn.c: the connection state machine (host/conn.c) and its HTTP glue, driven without TCP:
 * each case opens a connection on one end of an in-process socketpair (lh_conn_open_fd), writes
 * request bytes to the other end and collects what comes back while the worker's loop runs, with
 * a real VM and the scripts in tests/fixtures/conn. Covered: a handler that completes inside
 * dispatch (its response is still sent from the loop), keep-alive, pipelining with a suspended
 * handler in the middle, a body larger than the socket buffer (queued with uv_write), limits
 * (431), the header and idle timeouts, the host's reserved paths and 405, the connection limit,
 * reading ahead while a request runs (a pipelined request, a half-close, more than the read-ahead
 * cap), a client that hangs up while its request runs and shutdown closing busy and idle
 * connections (a busy connection is freed only once its handler ends). */
#include "conn.h"
#include "lh.h"
#include "lh_test.h"
#include "readiness.h"
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static lh_config_t g_cfg;
static lh_server_t g_srv;
static lh_worker_t g_w;

static void setup(void) {
  lh_config_defaults(&g_cfg);
  const char *file = __FILE__;
  const char *tail = strstr(file, "tests/c/test_conn.c");
  int root = tail ? (int)(tail - file) : 0;
  snprintf(g_cfg.scripts, sizeof g_cfg.scripts, "%.*stests/fixtures/conn", root, file);
  g_cfg.header_timeout_ms = 150;
  g_cfg.body_timeout_ms = 150;
  g_cfg.idle_timeout_ms = 300;
  g_cfg.max_header_bytes = 1024;
  g_cfg.access_log = 0;
  memset(&g_srv, 0, sizeof g_srv);
  g_srv.cfg = &g_cfg;
  memcpy(g_srv.id_prefix, "abcdef01", 9);
  atomic_store(&g_srv.started, 1);
  memset(&g_w, 0, sizeof g_w);
  g_w.srv = &g_srv;
  g_w.cfg = &g_cfg;
  g_w.limits.max_url_bytes = (size_t)g_cfg.max_url_bytes;
  g_w.limits.max_header_bytes = (size_t)g_cfg.max_header_bytes;
  g_w.limits.max_header_fields = (size_t)g_cfg.max_header_fields;
  g_w.limits.max_body_bytes = (size_t)g_cfg.max_body_bytes;
  uv_loop_init(&g_w.loop);
  lh_buf_init(&g_w.out);
  char err[512] = "";
  int rc = lh_cq_create(&g_w.cq, &g_w.loop);
  if (rc == 0)
    rc = lh_vm_create(&g_w.vm, &g_cfg, &g_w.loop, g_w.cq, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "test_conn: cannot set up the worker: %s\n", err);
    exit(2);
  }
}

/* Runs the loop until nothing is left but the worker's own handles. */
static void drain(void) {
  for (int i = 0; i < 2000 && (g_w.conns || atomic_load(&g_srv.connections) > 0); i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
}

static void teardown(void) {
  lh_conn_close_all(&g_w);
  drain();
  lh_vm_free(g_w.vm);
  lh_cq_close(g_w.cq);
  uv_run(&g_w.loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(uv_loop_close(&g_w.loop), 0);
  lh_buf_free(&g_w.out);
}

/* Opens a connection; returns the client's end (non-blocking). */
static int client(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
    return -1;
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  /* The loop's clock is cached: refresh it, as a loop turn would before an accept, so that the
   * connection's first timer does not start in the past (slow set-up, valgrind). */
  uv_update_time(&g_w.loop);
  LH_CHECK_INT(lh_conn_open_fd(&g_w, sv[1]), 0);
  return sv[0];
}

static void send_all(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w < 0 && errno == EAGAIN) {
      uv_run(&g_w.loop, UV_RUN_NOWAIT);
      continue;
    }
    LH_CHECK(w > 0);
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

typedef struct {
  char *data;
  size_t len;
  int closed; /* the host closed the connection */
} lh_got_t;

/* Runs the loop and reads from fd until `want` responses have fully arrived (counted by their
 * status lines and Content-Length), the host closes, or ms pass. */
static int count_complete(const lh_got_t *g) {
  int n = 0;
  size_t pos = 0;
  for (;;) {
    const char *head_end = g->data ? strstr(g->data + pos, "\r\n\r\n") : NULL;
    if (!head_end)
      return n;
    const char *cl = strstr(g->data + pos, "Content-Length: ");
    size_t body = cl && cl < head_end ? (size_t)atol(cl + 16) : 0;
    if (strncmp(g->data + pos, "HTTP/1.1 100", 12) == 0 ||
        strstr(g->data + pos, " 204 ") == g->data + pos + 8)
      body = 0;
    size_t end = (size_t)(head_end + 4 - g->data) + body;
    if (end > g->len)
      return n;
    n++;
    pos = end;
  }
}

static lh_got_t collect(int fd, int want, int ms) {
  lh_got_t g = {0};
  size_t cap = 0;
  unsigned long long deadline = lh_now_ns() + (unsigned long long)ms * 1000000ULL;
  while (lh_now_ns() < deadline) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 1) <= 0)
      continue;
    if (cap - g.len < 65537) {
      cap = cap * 2 + 65537;
      g.data = realloc(g.data, cap);
      g.data[g.len] = '\0';
    }
    ssize_t r = read(fd, g.data + g.len, cap - g.len - 1);
    if (r == 0) {
      g.closed = 1;
      break;
    }
    if (r > 0) {
      g.len += (size_t)r;
      g.data[g.len] = '\0';
      if (want > 0 && count_complete(&g) >= want)
        break;
    }
  }
  if (!g.data)
    g.data = calloc(1, 1);
  return g;
}

static int occurrences(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void test_sync_handler_and_keep_alive(void) {
  int fd = client();
  /* /now completes inside lh_vm_dispatch: the response still comes, from the loop. */
  send_all(fd, "GET /now?a=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  lh_got_t g = collect(fd, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 200 OK\r\n", 17) == 0);
  LH_CHECK(strstr(g.data, "\r\n\r\nnow a=1") != NULL);
  LH_CHECK(!g.closed);
  LH_CHECK(strstr(g.data, "Connection: close") == NULL);
  free(g.data);
  /* The same connection serves the next request. */
  send_all(fd, "GET /now?b=2 HTTP/1.1\r\nHost: t\r\n\r\n");
  g = collect(fd, 1, 2000);
  LH_CHECK(strstr(g.data, "now b=2") != NULL);
  free(g.data);
  /* HTTP/1.0 without keep-alive: answered, then closed. */
  send_all(fd, "GET /now HTTP/1.0\r\n\r\n");
  g = collect(fd, 2, 2000);
  LH_CHECK(strstr(g.data, "Connection: close") != NULL);
  LH_CHECK(g.closed);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static void test_pipelining_in_order(void) {
  int fd = client();
  send_all(fd, "GET /now?1 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /sleep/50 HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
               "GET /now?4 HTTP/1.1\r\nHost: t\r\n\r\n");
  lh_got_t g = collect(fd, 4, 3000);
  LH_CHECK_INT(count_complete(&g), 4);
  const char *a = strstr(g.data, "now 1"), *b = strstr(g.data, "slept 50");
  const char *c = strstr(g.data, "\"alive\""), *d = strstr(g.data, "now 4");
  LH_CHECK(a && b && c && d && a < b && b < c && c < d);
  LH_CHECK(!g.closed);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static void test_large_body_is_queued_whole(void) {
  /* The send timeout is idle_timeout_ms for the whole queued response: give a slow run
   * (valgrind) room to move 4 MB. */
  g_cfg.idle_timeout_ms = 10000;
  int fd = client();
  /* 4 MB does not fit a socketpair's buffer: the rest goes through uv_write. */
  send_all(
      fd, "GET /big/4000000 HTTP/1.1\r\nHost: t\r\n\r\nGET /now?after HTTP/1.1\r\nHost: t\r\n\r\n");
  lh_got_t g = collect(fd, 2, 20000);
  LH_CHECK_INT(count_complete(&g), 2);
  LH_CHECK(strstr(g.data, "Content-Length: 4000000\r\n") != NULL);
  const char *body = strstr(g.data, "\r\n\r\n");
  int ok = body != NULL;
  for (size_t i = 0; ok && i < 4000000; i += 99991)
    ok = body[4 + i] == (char)('0' + i % 10);
  LH_CHECK(ok);
  LH_CHECK(strstr(g.data, "now after") != NULL);
  free(g.data);
  close(fd);
  drain();
  g_cfg.idle_timeout_ms = 300;
}

static void test_limits_and_errors(void) {
  int fd = client();
  char big[2048];
  snprintf(big, sizeof big, "GET /now HTTP/1.1\r\nHost: t\r\nX-Big: %01500d\r\n\r\n", 0);
  send_all(fd, big);
  lh_got_t g = collect(fd, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 431", 12) == 0);
  LH_CHECK(strstr(g.data, "\"response_status\":false") != NULL);
  g = (free(g.data), collect(fd, 0, 500));
  LH_CHECK(g.closed);
  free(g.data);
  close(fd);
  /* 405 with Allow for a path of the scripts; the reserved paths answer GET and HEAD only. */
  fd = client();
  send_all(fd, "DELETE /now HTTP/1.1\r\nHost: t\r\n\r\nPOST /healthz HTTP/1.1\r\nHost: t\r\n"
               "Content-Length: 0\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: t\r\n\r\n"
               "HEAD /now HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
  g = collect(fd, 5, 2000);
  LH_CHECK_INT(occurrences(g.data, "HTTP/1.1 405"), 2);
  LH_CHECK(strstr(g.data, "Allow: GET, HEAD\r\n") != NULL);
  LH_CHECK_INT(occurrences(g.data, "HTTP/1.1 404"), 2);
  LH_CHECK(strstr(g.data, "\"code\":\"method_not_allowed\"") != NULL);
  /* HEAD: the length of the GET body, but no body bytes. */
  LH_CHECK(strstr(g.data, "HTTP/1.1 200 OK") != NULL);
  LH_CHECK(strstr(g.data, "now ") == NULL);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static void test_timeouts(void) {
  /* A request head that never ends: 408 after header_timeout_ms, then close. */
  int fd = client();
  unsigned long long t0 = lh_now_ns();
  send_all(fd, "GET /now HTTP/1.1\r\nHost:");
  lh_got_t g = collect(fd, 0, 2000);
  double ms = (double)(lh_now_ns() - t0) / 1e6;
  LH_CHECK(strncmp(g.data, "HTTP/1.1 408", 12) == 0);
  LH_CHECK(g.closed);
  LH_CHECK(ms >= 140 && ms < 1500);
  free(g.data);
  close(fd);
  /* An idle connection closes without an answer after idle_timeout_ms. */
  fd = client();
  t0 = lh_now_ns();
  g = collect(fd, 0, 2000);
  ms = (double)(lh_now_ns() - t0) / 1e6;
  LH_CHECK(g.closed);
  LH_CHECK_INT(g.len, 0);
  LH_CHECK(ms >= 290 && ms < 1500);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

/* Sends GET /sleep/50 on fd and runs the loop until its handler is suspended in core.sleep. */
static void sleep_50(int fd) {
  send_all(fd, "GET /sleep/50 HTTP/1.1\r\nHost: t\r\n\r\n");
  lh_got_t g = collect(fd, 0, 20);
  free(g.data);
  LH_CHECK_INT(lh_vm_busy(g_w.vm), 1);
}

/* Reading goes on while a handler runs: a request pipelined meanwhile, then the end of input
 * (a half-close), are kept and served after the running one, in order; past
 * LH_PENDING_WHILE_BUSY the rest waits in the socket and is read once the response is out. */
static void test_reads_ahead_while_handling(void) {
  int fd = client();
  sleep_50(fd);
  lh_got_t g;
  send_all(fd, "GET /now?2 HTTP/1.1\r\nHost: t\r\n\r\n");
  shutdown(fd, SHUT_WR);
  g = collect(fd, 2, 3000);
  LH_CHECK_INT(count_complete(&g), 2);
  const char *a = strstr(g.data, "slept 50"), *b = strstr(g.data, "now 2");
  LH_CHECK(a && b && a < b);
  free(g.data);
  g = collect(fd, 0, 1000);
  LH_CHECK(g.closed); /* then the end of input closes it */
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);

  /* A 200 kB body sent while the first request sleeps: more than is read ahead. */
  g_cfg.idle_timeout_ms = 10000;
  g_w.limits.max_body_bytes = 1u << 20;
  fd = client();
  sleep_50(fd);
  enum { N = 200000 };
  char *req = malloc(N + 128);
  int head = snprintf(req, 128,
                      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n",
                      N);
  for (int i = 0; i < N; i++) /* a JSON string */
    req[head + i] = i == 0 || i == N - 1 ? '"' : (char)('a' + i % 26);
  req[head + N] = '\0';
  send_all(fd, req);
  g = collect(fd, 2, 5000);
  int complete = count_complete(&g) == 2;
  LH_CHECK(complete);
  const char *echo = strstr(g.data, "Content-Length: 200000\r\n");
  const char *body = echo ? strstr(echo, "\r\n\r\n") : NULL;
  LH_CHECK(strstr(g.data, "slept 50") != NULL && body != NULL);
  if (complete && body) /* whole: count_complete saw the 200000 bytes */
    LH_CHECK(memcmp(body + 4, req + head, N) == 0);
  free(req);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  g_cfg.idle_timeout_ms = 300;
  g_w.limits.max_body_bytes = (size_t)g_cfg.max_body_bytes;
}

static void test_close_while_handling(void) {
  /* The client hangs up while its handler is suspended: reading sees the end and stops; the
   * host's response finds the connection gone, and it goes away after the handler ends. */
  int fd = client();
  sleep_50(fd);
  lh_got_t g;
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  LH_CHECK_INT(lh_vm_busy(g_w.vm), 0);
  /* Shutdown closes every connection while a handler runs: the connection leaves the worker's
   * list at once (ORPHANED) but is freed only when the VM is done with its exchange. */
  fd = client();
  send_all(fd, "GET /sleep/100 HTTP/1.1\r\nHost: t\r\n\r\n");
  g = collect(fd, 0, 20);
  free(g.data);
  LH_CHECK_INT(lh_vm_busy(g_w.vm), 1);
  lh_conn_close_all(&g_w);
  LH_CHECK(g_w.conns == NULL);
  for (int i = 0; i < 20; i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  /* Alive exactly as long as the handler runs (a loaded machine may take longer than its 100 ms
   * sleep to get here: then both are over). */
  LH_CHECK_INT(atomic_load(&g_srv.connections), lh_vm_busy(g_w.vm) ? 1 : 0);
  for (int i = 0; i < 1000 && atomic_load(&g_srv.connections) > 0; i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  LH_CHECK_INT(lh_vm_busy(g_w.vm), 0);
  g = collect(fd, 0, 200);
  LH_CHECK(g.closed);
  LH_CHECK_INT(g.len, 0); /* closed without an answer */
  free(g.data);
  close(fd);
  /* Shutdown's first step closes idle connections only; a busy one answers, then closes. */
  int idle = client();
  fd = client();
  send_all(fd, "GET /sleep/30 HTTP/1.1\r\nHost: t\r\n\r\n");
  g = collect(fd, 0, 10);
  free(g.data);
  lh_conn_close_idle(&g_w);
  g = collect(idle, 0, 200);
  LH_CHECK(g.closed && g.len == 0);
  free(g.data);
  g = collect(fd, 0, 2000);
  LH_CHECK(strstr(g.data, "slept 30") != NULL);
  LH_CHECK(strstr(g.data, "Connection: close") != NULL);
  LH_CHECK(g.closed);
  free(g.data);
  close(fd);
  close(idle);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static void test_shutdown_keeps_100_continue(void) {
  /* Shutdown starts while a client waits to send its body after `Expect: 100-continue`: the
   * interim 100 must not end the connection (it is marked last); the final answer still comes. */
  int fd = client();
  send_all(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
               "Content-Type: application/json\r\nExpect: 100-continue\r\n");
  lh_got_t g = collect(fd, 0, 20);
  free(g.data);
  lh_conn_close_idle(&g_w); /* mid-header: marked last, not closed */
  send_all(fd, "\r\n");
  g = collect(fd, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
  LH_CHECK(!g.closed);
  free(g.data);
  send_all(fd, "[1,2]");
  g = collect(fd, 0, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 200 ", 13) == 0);
  LH_CHECK(strstr(g.data, "\r\n\r\n[1,2]") != NULL);
  LH_CHECK(strstr(g.data, "Connection: close") != NULL);
  LH_CHECK(g.closed);
  free(g.data);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static int g_ready_rc = LH_EIO;
static int fake_check(void *ud) {
  (void)ud;
  return g_ready_rc;
}

static void test_readyz_and_connection_limit(void) {
  /* A registered check that has not passed makes /readyz 503 with its message and code. */
  LH_CHECK_INT(lh_ready_register("fake", "nopool", fake_check, NULL, "Fake is down", "fake_down"),
               0);
  LH_CHECK_INT(lh_ready_register("fake", "nopool", fake_check, NULL, "x", "y"), LH_EEXIST);
  int fd = client();
  send_all(fd, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
  lh_got_t g = collect(fd, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 503", 12) == 0);
  LH_CHECK(strstr(g.data, "{\"message\":\"Fake is down\",\"response_status\":false,"
                          "\"response_data\":{\"code\":\"fake_down\"}}") != NULL);
  LH_CHECK(strstr(g.data, "Retry-After: 1\r\n") != NULL);
  free(g.data);
  LH_CHECK_INT(lh_ready_unregister("fake"), 0);
  LH_CHECK_INT(lh_ready_unregister("fake"), LH_ENOTFOUND);
  send_all(fd, "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
  g = collect(fd, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 200", 12) == 0);
  LH_CHECK(strstr(g.data, "{\"message\":\"ready\",\"response_status\":true,\"response_data\":"
                          "{\"status\":\"ready\",\"generation\":\"") != NULL);
  free(g.data);
  /* Past max_connections a new connection gets a 503 envelope and is closed. */
  g_cfg.max_connections = 1;
  int fd2 = client();
  g = collect(fd2, 1, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 503", 12) == 0);
  LH_CHECK(strstr(g.data, "\"code\":\"too_many_connections\"") != NULL);
  free(g.data);
  g = collect(fd2, 0, 500);
  LH_CHECK(g.closed);
  free(g.data);
  /* The refused connection is gone at once, not lingering on its socket while the client keeps
   * it open: the cap bounds open sockets. */
  for (int i = 0; i < 20; i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(atomic_load(&g_srv.connections), 1);
  LH_CHECK_INT(g_w.lingering, 0);
  g_cfg.max_connections = 10000;
  close(fd2);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
}

static void test_error_answer_closes_lingering(void) {
  /* After an error answer the host half-closes: the client reads the answer and then EOF, but the
   * connection stays to drain what the client still sends, until the client closes. */
  int fd = client();
  send_all(fd, "GET /now HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n");
  lh_got_t g = collect(fd, 0, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 400 ", 13) == 0);
  LH_CHECK(g.closed);
  free(g.data);
  LH_CHECK_INT(atomic_load(&g_srv.connections), 1);
  send_all(fd, "more bytes the client had sent: read and discarded, not answered");
  for (int i = 0; i < 20; i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(atomic_load(&g_srv.connections), 1);
  close(fd);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  /* At most LH_CONN_LINGER_MAX connections linger at once; past it an error answer closes. */
  int fds[LH_CONN_LINGER_MAX + 3];
  for (int i = 0; i < LH_CONN_LINGER_MAX + 3; i++) {
    fds[i] = client();
    send_all(fds[i], "GET /now HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n");
    g = collect(fds[i], 0, 2000);
    LH_CHECK(strncmp(g.data, "HTTP/1.1 400 ", 13) == 0 && g.closed);
    free(g.data);
  }
  for (int i = 0; i < 20; i++) {
    uv_run(&g_w.loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  LH_CHECK_INT(g_w.lingering, LH_CONN_LINGER_MAX);
  LH_CHECK_INT(atomic_load(&g_srv.connections), LH_CONN_LINGER_MAX);
  for (int i = 0; i < LH_CONN_LINGER_MAX + 3; i++)
    close(fds[i]);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  LH_CHECK_INT(g_w.lingering, 0);
  /* A successful last answer closes at once: nothing is left unread. */
  fd = client();
  send_all(fd, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  g = collect(fd, 0, 2000);
  LH_CHECK(strncmp(g.data, "HTTP/1.1 200 ", 13) == 0 && g.closed);
  free(g.data);
  drain();
  LH_CHECK_INT(atomic_load(&g_srv.connections), 0);
  close(fd);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* as main.c: a peer that hung up is an error code, not a signal */
  setup();
  LH_RUN(test_sync_handler_and_keep_alive);
  LH_RUN(test_pipelining_in_order);
  LH_RUN(test_large_body_is_queued_whole);
  LH_RUN(test_limits_and_errors);
  LH_RUN(test_timeouts);
  LH_RUN(test_reads_ahead_while_handling);
  LH_RUN(test_close_while_handling);
  LH_RUN(test_readyz_and_connection_limit);
  LH_RUN(test_error_answer_closes_lingering);
  LH_RUN(test_shutdown_keeps_100_continue);
  teardown();
  return lh_test_done();
}
