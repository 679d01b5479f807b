/* test_metrics.c: unit tests for host/metrics.c: the request series (labels, counts, the bounded
 * tables and their "(other)" overflow), the histogram's cumulative buckets, exact counts under
 * concurrent writers, script counters (names, limits, reuse) and the rendered text. */
#include "lh.h"
#include "lh_test.h"
#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lh_server_t g_srv;

static char *render(void) {
  lh_buf_t b;
  lh_buf_init(&b);
  lh_metrics_render(&b, &g_srv, "gen-1");
  LH_CHECK(!b.failed);
  lh_buf_putc(&b, '\0');
  return b.data;
}

/* 1 when text has this exact line. */
static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
    if ((p == text || p[-1] == '\n') && p[n] == '\n')
      return 1;
  return 0;
}

/* The number of lines starting with prefix. */
static int count_lines(const char *text, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, len) == 0)
      n++;
  return n;
}

#define CHECK_LINE(text, line)                                                                     \
  do {                                                                                             \
    if (!has_line(text, line)) {                                                                   \
      fprintf(stderr, "  %s:%d: no line \"%s\"\n", __FILE__, __LINE__, line);                      \
      lh_test_failed_checks++;                                                                     \
    }                                                                                              \
  } while (0)

static void test_series_labels(void) {
  lh_metrics_reset();
  for (int i = 0; i < 3; i++)
    lh_metrics_request("GET", "/users/{id}", 200, 2000000);
  lh_metrics_request("GET", "/users/{id}", 404, 2000000);
  lh_metrics_request("DELETE", "/users/{id}", 204, 2000000);
  lh_metrics_request("GET", "", 404, 100);
  lh_metrics_request(NULL, "", 400, 100);
  lh_metrics_request("GET", "/a\"b\\c\nd", 200, 100);
  lh_metrics_request("GET", "/x\xff", 200, 100);
  lh_metrics_request("GET", "/bad-status", 600, 100); /* not a status: ignored */
  char *t = render();
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"/users/{id}\",code=\"200\"} 3");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"/users/{id}\",code=\"404\"} 1");
  CHECK_LINE(t,
             "luahost_http_requests_total{method=\"DELETE\",route=\"/users/{id}\",code=\"204\"} 1");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"(unmatched)\",code=\"404\"} 1");
  CHECK_LINE(t,
             "luahost_http_requests_total{method=\"(none)\",route=\"(unmatched)\",code=\"400\"} 1");
  CHECK_LINE(
      t, "luahost_http_requests_total{method=\"GET\",route=\"/a\\\"b\\\\c\\nd\",code=\"200\"} 1");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"/x?\",code=\"200\"} 1");
  LH_CHECK(strstr(t, "bad-status") == NULL);
  LH_CHECK_INT(count_lines(t, "luahost_http_requests_total{"), 7);
  /* One histogram per (method, route), whatever the codes. */
  LH_CHECK_INT(count_lines(t, "luahost_http_request_duration_seconds_count{"), 6);
  CHECK_LINE(t,
             "luahost_http_request_duration_seconds_count{method=\"GET\",route=\"/users/{id}\"} 4");
  free(t);
}

static void test_histogram_buckets(void) {
  lh_metrics_reset();
  lh_metrics_request("GET", "/h", 200, 500000ULL);      /* 0.5 ms */
  lh_metrics_request("GET", "/h", 200, 1000000ULL);     /* exactly 1 ms: le="0.001" */
  lh_metrics_request("GET", "/h", 200, 3000000ULL);     /* 3 ms */
  lh_metrics_request("GET", "/h", 200, 20000000ULL);    /* 20 ms */
  lh_metrics_request("GET", "/h", 200, 20000000000ULL); /* 20 s: only +Inf */
  char *t = render();
#define B(le, n)                                                                                   \
  "luahost_http_request_duration_seconds_bucket{method=\"GET\",route=\"/h\",le=\"" le "\"} " #n
  CHECK_LINE(t, B("0.001", 2));
  CHECK_LINE(t, B("0.0025", 2));
  CHECK_LINE(t, B("0.005", 3));
  CHECK_LINE(t, B("0.01", 3));
  CHECK_LINE(t, B("0.025", 4));
  CHECK_LINE(t, B("1", 4));
  CHECK_LINE(t, B("10", 4));
  CHECK_LINE(t, B("+Inf", 5));
#undef B
  LH_CHECK_INT(count_lines(t, "luahost_http_request_duration_seconds_bucket{"),
               LH_METRICS_BUCKETS + 1);
  CHECK_LINE(t, "luahost_http_request_duration_seconds_count{method=\"GET\",route=\"/h\"} 5");
  CHECK_LINE(t,
             "luahost_http_request_duration_seconds_sum{method=\"GET\",route=\"/h\"} 20.024500000");
  free(t);
}

static void test_bounded_overflow(void) {
  lh_metrics_reset();
  char route[32];
  for (int i = 0; i < LH_METRICS_MAX_SERIES; i++) {
    snprintf(route, sizeof(route), "/r%d", i);
    lh_metrics_request("GET", route, 200, 1000);
  }
  lh_metrics_request("GET", "/r0", 200, 1000);  /* an existing series still counts */
  lh_metrics_request("GET", "/r0", 201, 1000);  /* a new code: the series table is full */
  lh_metrics_request("GET", "/new", 200, 1000); /* a new route: the route table is full */
  lh_metrics_request("PUT", "/new2", 200, 1000);
  char *t = render();
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"/r0\",code=\"200\"} 2");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"GET\",route=\"/r1023\",code=\"200\"} 1");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"(other)\",route=\"(other)\",code=\"201\"} 1");
  CHECK_LINE(t, "luahost_http_requests_total{method=\"(other)\",route=\"(other)\",code=\"200\"} 2");
  LH_CHECK(strstr(t, "/new") == NULL);
  LH_CHECK_INT(count_lines(t, "luahost_http_requests_total{"), LH_METRICS_MAX_SERIES + 2);
  LH_CHECK_INT(count_lines(t, "luahost_http_request_duration_seconds_count{"),
               LH_METRICS_MAX_SERIES + 1);
  /* r0's histogram has both of its requests, (other)'s the two new routes. */
  CHECK_LINE(t, "luahost_http_request_duration_seconds_count{method=\"GET\",route=\"/r0\"} 3");
  CHECK_LINE(t,
             "luahost_http_request_duration_seconds_count{method=\"(other)\",route=\"(other)\"} 2");
  free(t);
  /* A full table keeps answering for a long route, too (cut, never overrun). */
  char longroute[LH_METRICS_ROUTE_MAX * 2];
  memset(longroute, 'x', sizeof(longroute) - 1);
  longroute[0] = '/';
  longroute[sizeof(longroute) - 1] = '\0';
  lh_metrics_reset();
  lh_metrics_request("GET", longroute, 200, 1000);
  lh_metrics_request("GET", longroute, 200, 1000);
  t = render();
  LH_CHECK_INT(count_lines(t, "luahost_http_requests_total{method=\"GET\",route=\"/xxx"), 1);
  LH_CHECK(strstr(t, "\",code=\"200\"} 2\n") != NULL);
  free(t);
}

#define THREADS 4
#define PER_THREAD 20000

static void *writer(void *arg) {
  (void)arg;
  static const char *const routes[] = {"/a", "/b/{id}", "/c", "/d", "/e", "/f", "/g", "/h"};
  for (int i = 0; i < PER_THREAD; i++)
    lh_metrics_request(i % 3 ? "GET" : "POST", routes[i % 8], 200 + (i / 8) % 2, 1000);
  return NULL;
}

static void test_concurrent_writers(void) {
  lh_metrics_reset();
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    LH_CHECK_INT(pthread_create(&th[i], NULL, writer, NULL), 0);
  for (int k = 0; k < 20; k++) { /* scrapes while the writers run: well-formed every time */
    char *t = render();
    LH_CHECK(strstr(t, "# TYPE process_open_fds gauge\n") != NULL);
    LH_CHECK_INT(count_lines(t, "luahost_http_request_duration_seconds_bucket{"),
                 count_lines(t, "luahost_http_request_duration_seconds_count{") *
                     (LH_METRICS_BUCKETS + 1));
    free(t);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  char *t = render();
  /* Every (method, route, code) made exactly one series, and the counts add up. */
  LH_CHECK_INT(count_lines(t, "luahost_http_requests_total{"), 2 * 8 * 2);
  LH_CHECK_INT(count_lines(t, "luahost_http_request_duration_seconds_count{"), 2 * 8);
  unsigned long long total = 0;
  for (const char *p = t; (p = strstr(p, "\nluahost_http_requests_total{")) != NULL; p++)
    total += strtoull(strstr(p, "} ") + 2, NULL, 10);
  LH_CHECK_INT(total, THREADS * PER_THREAD);
  free(t);
}

static void test_script_counters(void) {
  lh_metrics_reset();
  char err[200];
  int a = lh_metrics_counter("login_throttled_total", "Refused logins.", err, sizeof(err));
  LH_CHECK(a >= 0);
  LH_CHECK_INT(lh_metrics_counter("login_throttled_total", "other help", err, sizeof(err)), a);
  int b = lh_metrics_counter("_x2_total", "Back\\slash\nand newline.", err, sizeof(err));
  LH_CHECK(b >= 0 && b != a);
  static const char *const bad[] = {
      "",         "Login_total",         "2x_total",       "login",        "a-b_total", "_total",
      "x_total ", "http_requests_total", "requests_total", "reloads_total"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(bad); i++) {
    err[0] = '\0';
    LH_CHECK_INT(lh_metrics_counter(bad[i], "h", err, sizeof(err)), LH_EINVAL);
    LH_CHECK(err[0] != '\0');
  }
  char longname[LH_METRICS_NAME_MAX + 8];
  memset(longname, 'a', sizeof(longname));
  strcpy(longname + LH_METRICS_NAME_MAX - 5, "_total"); /* 65 characters */
  LH_CHECK_INT(lh_metrics_counter(longname, "h", err, sizeof(err)), LH_EINVAL);
  longname[0] = '\0';
  LH_CHECK_INT(lh_metrics_counter("x_total", "\xff", err, sizeof(err)), LH_EINVAL);
  lh_metrics_counter_add(a, 2);
  lh_metrics_counter_add(a, 1);
  lh_metrics_counter_add(99, 1); /* no such counter: ignored */
  char *t = render();
  CHECK_LINE(t, "# HELP luahost_login_throttled_total Refused logins.");
  CHECK_LINE(t, "# TYPE luahost_login_throttled_total counter");
  CHECK_LINE(t, "luahost_login_throttled_total 3");
  CHECK_LINE(t, "# HELP luahost__x2_total Back\\\\slash\\nand newline.");
  CHECK_LINE(t, "luahost__x2_total 0");
  free(t);
  char name[32];
  int made = 2, rc = 0;
  for (int i = 0; i < LH_METRICS_MAX_COUNTERS + 1 && rc >= 0; i++) {
    snprintf(name, sizeof(name), "c%d_total", i);
    rc = lh_metrics_counter(name, "h", err, sizeof(err));
    if (rc >= 0)
      made++;
  }
  LH_CHECK_INT(rc, LH_ELIMIT);
  LH_CHECK_INT(made, LH_METRICS_MAX_COUNTERS);
}

static void test_render_families(void) {
  lh_metrics_reset();
  atomic_store(&g_srv.connections, 3);
  atomic_store(&g_srv.status_count[200], 5);
  lh_metrics_budget_exceeded();
  lh_metrics_reload(1);
  lh_metrics_reload(0);
  lh_metrics_reload(0);
  char *t = render();
  CHECK_LINE(t, "luahost_connections 3");
  CHECK_LINE(t, "luahost_script_budget_exceeded_total 1");
  CHECK_LINE(t, "luahost_reloads_total{result=\"ok\"} 1");
  CHECK_LINE(t, "luahost_reloads_total{result=\"failed\"} 2");
  CHECK_LINE(t, "luahost_generation_info{generation=\"gen-1\",id=\"gen-1\"} 1");
  CHECK_LINE(t, "luahost_build_info{version=\"" LH_VERSION "\"} 1");
  CHECK_LINE(t, "luahost_requests_total{status=\"200\"} 5");
  CHECK_LINE(t, "# TYPE luahost_http_request_duration_seconds histogram");
  CHECK_LINE(t, "# TYPE luahost_pool_jobs_rejected_total counter");
  CHECK_LINE(t, "# TYPE luahost_pool_queued gauge");
  CHECK_LINE(t, "# TYPE process_cpu_seconds_total counter");
  LH_CHECK_INT(count_lines(t, "process_resident_memory_bytes "), 1);
  LH_CHECK_INT(count_lines(t, "process_open_fds "), 1);
  LH_CHECK_INT(count_lines(t, "process_max_fds "), 1);
  LH_CHECK_INT(count_lines(t, "process_start_time_seconds "), 1);
  LH_CHECK(strstr(t, "deprecated: use luahost_http_requests_total") != NULL);
  /* Every family has one HELP and one TYPE line, and every sample line belongs to the family
   * announced last (Prometheus text format). */
  LH_CHECK_INT(count_lines(t, "# HELP "), count_lines(t, "# TYPE "));
  char fam[128] = "";
  for (const char *p = t; *p;) {
    const char *e = strchr(p, '\n');
    LH_CHECK(e != NULL);
    if (!e)
      break;
    if (strncmp(p, "# TYPE ", 7) == 0) {
      sscanf(p + 7, "%127s", fam);
    } else if (p[0] != '#') {
      LH_CHECK(fam[0] && strncmp(p, fam, strlen(fam)) == 0);
    }
    p = e + 1;
  }
  free(t);
}

int main(void) {
  LH_RUN(test_series_labels);
  LH_RUN(test_histogram_buckets);
  LH_RUN(test_bounded_overflow);
  LH_RUN(test_concurrent_writers);
  LH_RUN(test_script_counters);
  LH_RUN(test_render_families);
  return lh_test_done();
}
