/* metrics.c: the process's metrics (see metrics.h) and their rendering.
 *
 * Requests go into two fixed, open-addressed hash tables that only grow:
 *  - `routes`: one entry per (method, route) label set, with its latency histogram. A slot of
 *    `route_slot` is claimed with a compare-and-swap (EMPTY -> BUSY), the entry is filled, then
 *    the slot is published as the entry's index; a thread that finds a slot BUSY waits for it
 *    (a few stores), so every label set has exactly one entry.
 *  - `codes`: one counter per (route entry, status code), keyed by one 64-bit word that is
 *    claimed with a single compare-and-swap.
 * Slots never go back to EMPTY, so linear probing needs no tombstones for lookups to stay right.
 * Both tables hold at most LH_METRICS_MAX_SERIES entries in twice as many slots; past that a
 * request is counted in `route_other` and `code_other` (route="(other)"). Rendering reads the
 * same atomics without stopping the writers: each sample is exact, the families are a snapshot
 * taken over a few microseconds. The histogram's +Inf bucket and _count are one sum, so they
 * always agree. */
#include "metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "jobs.h"
#include "lh.h"
#include "readiness.h"
#include "utf8.h"

#ifndef LH_VERSION
#define LH_VERSION "unknown"
#endif

#define SLOTS (2 * LH_METRICS_MAX_SERIES) /* a power of two */
#define SLOT_EMPTY 0
#define SLOT_BUSY (-1)
#define SLOT_DEAD (-2) /* claimed by a thread that then found the table full: skipped */
#define METHOD_MAX 16

/* Upper bounds of the finite buckets, for an HTTP API: 1 ms to 10 s. */
static const char *const bucket_le[LH_METRICS_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "10"};
static const unsigned long long bucket_ns[LH_METRICS_BUCKETS] = {
    1000000ULL,    2500000ULL,    5000000ULL,    10000000ULL,  25000000ULL,
    50000000ULL,   100000000ULL,  250000000ULL,  500000000ULL, 1000000000ULL,
    2500000000ULL, 5000000000ULL, 10000000000ULL};

typedef struct {
  atomic_int ready;
  char method[METHOD_MAX];
  char route[LH_METRICS_ROUTE_MAX];
  atomic_ullong bucket[LH_METRICS_BUCKETS + 1]; /* per bucket, not cumulative; the last: > 10 s */
  atomic_ullong sum_ns;
} lh_route_series_t;

typedef struct {
  atomic_ullong key; /* (route index + 1) << 16 | status code; 0: empty */
  atomic_ullong count;
} lh_code_series_t;

static atomic_int route_slot[SLOTS]; /* SLOT_* or a route index + 1 */
static lh_route_series_t routes[LH_METRICS_MAX_SERIES];
static atomic_int nroutes; /* may pass the maximum by the racers that found it full */
static lh_route_series_t route_other;

static lh_code_series_t codes[SLOTS];
static atomic_int ncodes;
static atomic_ullong code_other[LH_STATUS_SLOTS];

static atomic_ullong budget_exceeded;
static atomic_ullong reloads_ok, reloads_failed;

typedef struct {
  char name[LH_METRICS_NAME_MAX + 1];
  char help[LH_METRICS_HELP_MAX + 1];
  atomic_ullong value;
} lh_script_counter_t;

static lh_script_counter_t counters[LH_METRICS_MAX_COUNTERS];
static atomic_int ncounters; /* published after the entry is filled */
static pthread_mutex_t counters_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- recording ---- */

static unsigned long long fnv1a(unsigned long long h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static unsigned long long mix64(unsigned long long x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x;
}

static int route_matches(const lh_route_series_t *e, const char *method, size_t ml,
                         const char *route, size_t rl) {
  return memcmp(e->method, method, ml) == 0 && e->method[ml] == '\0' &&
         memcmp(e->route, route, rl) == 0 && e->route[rl] == '\0';
}

/* The entry of (method, route), made when missing; -1 when the table is full. */
static int route_index(const char *method, const char *route) {
  size_t ml = strnlen(method, METHOD_MAX - 1), rl = strnlen(route, LH_METRICS_ROUTE_MAX - 1);
  unsigned long long h = fnv1a(fnv1a(14695981039346656037ULL, method, ml), "\n", 1);
  unsigned pos = (unsigned)fnv1a(h, route, rl) & (SLOTS - 1);
  for (unsigned probes = 0; probes < SLOTS;) {
    int v = atomic_load_explicit(&route_slot[pos], memory_order_acquire);
    if (v == SLOT_BUSY) {
      sched_yield(); /* another thread is filling this slot's entry: a few stores */
      continue;
    }
    if (v == SLOT_EMPTY) {
      if (atomic_load(&nroutes) >= LH_METRICS_MAX_SERIES)
        return -1;
      int expected = SLOT_EMPTY;
      if (!atomic_compare_exchange_strong(&route_slot[pos], &expected, SLOT_BUSY))
        continue; /* lost the race: look at what the winner put there */
      int idx = atomic_fetch_add(&nroutes, 1);
      if (idx >= LH_METRICS_MAX_SERIES) {
        atomic_store_explicit(&route_slot[pos], SLOT_DEAD, memory_order_release);
        return -1;
      }
      lh_route_series_t *e = &routes[idx];
      memcpy(e->method, method, ml);
      e->method[ml] = '\0';
      memcpy(e->route, route, rl);
      e->route[rl] = '\0';
      atomic_store_explicit(&e->ready, 1, memory_order_release);
      atomic_store_explicit(&route_slot[pos], idx + 1, memory_order_release);
      return idx;
    }
    if (v > 0 && route_matches(&routes[v - 1], method, ml, route, rl))
      return v - 1;
    pos = (pos + 1) & (SLOTS - 1);
    probes++;
  }
  return -1;
}

/* The request counter of (route entry idx, status), made when missing; NULL when full. */
static atomic_ullong *code_counter(int idx, int status) {
  unsigned long long key = ((unsigned long long)(idx + 1) << 16) | (unsigned)status;
  unsigned pos = (unsigned)mix64(key) & (SLOTS - 1);
  for (unsigned probes = 0; probes < SLOTS; probes++, pos = (pos + 1) & (SLOTS - 1)) {
    unsigned long long k = atomic_load_explicit(&codes[pos].key, memory_order_acquire);
    if (k == key)
      return &codes[pos].count;
    if (k != 0)
      continue;
    if (atomic_fetch_add(&ncodes, 1) >= LH_METRICS_MAX_SERIES) {
      atomic_fetch_sub(&ncodes, 1);
      return NULL;
    }
    unsigned long long expected = 0;
    if (atomic_compare_exchange_strong(&codes[pos].key, &expected, key))
      return &codes[pos].count;
    atomic_fetch_sub(&ncodes, 1);
    if (expected == key)
      return &codes[pos].count;
  }
  return NULL;
}

void lh_metrics_request(const char *method, const char *route, int status,
                        unsigned long long duration_ns) {
  if (status < 0 || status >= LH_STATUS_SLOTS)
    return;
  if (!method || !*method)
    method = "(none)";
  if (!route || !*route)
    route = "(unmatched)";
  int idx = route_index(method, route);
  lh_route_series_t *r = idx >= 0 ? &routes[idx] : &route_other;
  unsigned b = 0;
  while (b < LH_METRICS_BUCKETS && duration_ns > bucket_ns[b])
    b++;
  atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&r->sum_ns, duration_ns, memory_order_relaxed);
  atomic_ullong *c = idx >= 0 ? code_counter(idx, status) : NULL;
  atomic_fetch_add_explicit(c ? c : &code_other[status], 1, memory_order_relaxed);
}

void lh_metrics_budget_exceeded(void) {
  atomic_fetch_add_explicit(&budget_exceeded, 1, memory_order_relaxed);
}

void lh_metrics_reload(int ok) {
  atomic_fetch_add(ok ? &reloads_ok : &reloads_failed, 1);
}

/* ---- script counters ---- */

/* The host's own families a script counter must not shadow (names without "luahost_"). */
static const char *const reserved_names[] = {"http_requests_total", "pool_jobs_rejected_total",
                                             "script_budget_exceeded_total", "reloads_total",
                                             "requests_total"};

static int valid_name(const char *name, char *err, size_t errlen) {
  size_t n = strlen(name);
  if (n == 0 || n > LH_METRICS_NAME_MAX) {
    lh_errf(err, errlen, "a counter name has 1 to %d characters", LH_METRICS_NAME_MAX);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9'))) {
      lh_errf(err, errlen, "counter name \"%s\": only [a-z_][a-z0-9_]* is allowed", name);
      return 0;
    }
  }
  if (n < 7 || strcmp(name + n - 6, "_total") != 0) {
    lh_errf(err, errlen, "counter name \"%s\" must end in \"_total\"", name);
    return 0;
  }
  for (size_t i = 0; i < LH_ARRAY_SIZE(reserved_names); i++) {
    if (strcmp(name, reserved_names[i]) == 0) {
      lh_errf(err, errlen, "counter name \"%s\" is one of the host's own metrics", name);
      return 0;
    }
  }
  return 1;
}

int lh_metrics_counter(const char *name, const char *help, char *err, size_t errlen) {
  if (!name || !valid_name(name, err, errlen))
    return LH_EINVAL;
  if (!help)
    help = "";
  size_t hl = strlen(help);
  if (hl > LH_METRICS_HELP_MAX || !lh_utf8_valid((const unsigned char *)help, hl)) {
    lh_errf(err, errlen, "counter %s: the help text is UTF-8 of at most %d bytes", name,
            LH_METRICS_HELP_MAX);
    return LH_EINVAL;
  }
  pthread_mutex_lock(&counters_mu);
  int n = atomic_load(&ncounters);
  for (int i = 0; i < n; i++) {
    if (strcmp(counters[i].name, name) == 0) {
      pthread_mutex_unlock(&counters_mu);
      return i;
    }
  }
  if (n == LH_METRICS_MAX_COUNTERS) {
    pthread_mutex_unlock(&counters_mu);
    lh_errf(err, errlen, "counter %s: at most %d counters", name, LH_METRICS_MAX_COUNTERS);
    return LH_ELIMIT;
  }
  strcpy(counters[n].name, name);
  memcpy(counters[n].help, help, hl + 1);
  atomic_store(&counters[n].value, 0);
  atomic_store(&ncounters, n + 1);
  pthread_mutex_unlock(&counters_mu);
  return n;
}

void lh_metrics_counter_add(int index, unsigned long long n) {
  if (index >= 0 && index < atomic_load(&ncounters))
    atomic_fetch_add_explicit(&counters[index].value, n, memory_order_relaxed);
}

void lh_metrics_reset(void) {
  memset(route_slot, 0, sizeof(route_slot));
  memset(routes, 0, sizeof(routes));
  memset(&route_other, 0, sizeof(route_other));
  memset(codes, 0, sizeof(codes));
  memset(code_other, 0, sizeof(code_other));
  atomic_store(&nroutes, 0);
  atomic_store(&ncodes, 0);
  atomic_store(&budget_exceeded, 0);
  atomic_store(&reloads_ok, 0);
  atomic_store(&reloads_failed, 0);
  memset(counters, 0, sizeof(counters));
  atomic_store(&ncounters, 0);
}

/* ---- rendering ---- */

static void family(lh_buf_t *b, const char *name, const char *type, const char *help) {
  lh_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, quote and newline escaped; bytes that are not UTF-8 become '?'. */
static void label_value(lh_buf_t *b, const char *s) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\\' || c == '"') {
      lh_buf_putc(b, '\\');
      lh_buf_putc(b, (char)c);
    } else if (c == '\n') {
      lh_buf_puts(b, "\\n");
    } else {
      size_t k = lh_utf8_seq_len((const unsigned char *)s + i, n - i);
      if (k == 0) {
        lh_buf_putc(b, '?');
        i++;
        continue;
      }
      lh_buf_append(b, s + i, k);
      i += k;
      continue;
    }
    i++;
  }
}

/* {method="...",route="..." (no closing brace: callers add labels) */
static void route_labels(lh_buf_t *b, const char *method, const char *route) {
  lh_buf_puts(b, "{method=\"");
  label_value(b, method);
  lh_buf_puts(b, "\",route=\"");
  label_value(b, route);
  lh_buf_putc(b, '"');
}

static void requests_family(lh_buf_t *b) {
  family(b, "luahost_http_requests_total", "counter",
         "HTTP responses, by method, route template and status code.");
  for (unsigned i = 0; i < SLOTS; i++) {
    unsigned long long k = atomic_load_explicit(&codes[i].key, memory_order_acquire);
    if (k == 0)
      continue;
    const lh_route_series_t *e = &routes[(k >> 16) - 1];
    lh_buf_puts(b, "luahost_http_requests_total");
    route_labels(b, e->method, e->route);
    lh_buf_printf(b, ",code=\"%u\"} %llu\n", (unsigned)(k & 0xffff),
                  atomic_load_explicit(&codes[i].count, memory_order_relaxed));
  }
  for (int s = 0; s < LH_STATUS_SLOTS; s++) {
    unsigned long long n = atomic_load_explicit(&code_other[s], memory_order_relaxed);
    if (n)
      lh_buf_printf(b,
                    "luahost_http_requests_total{method=\"(other)\",route=\"(other)\",code=\"%d\"}"
                    " %llu\n",
                    s, n);
  }
}

static void histogram(lh_buf_t *b, lh_route_series_t *r, const char *method, const char *route) {
  unsigned long long cum = 0;
  for (int i = 0; i <= LH_METRICS_BUCKETS; i++) {
    cum += atomic_load_explicit(&r->bucket[i], memory_order_relaxed);
    lh_buf_puts(b, "luahost_http_request_duration_seconds_bucket");
    route_labels(b, method, route);
    lh_buf_printf(b, ",le=\"%s\"} %llu\n", i < LH_METRICS_BUCKETS ? bucket_le[i] : "+Inf", cum);
  }
  double sum = (double)atomic_load_explicit(&r->sum_ns, memory_order_relaxed) / 1e9;
  lh_buf_puts(b, "luahost_http_request_duration_seconds_sum");
  route_labels(b, method, route);
  lh_buf_printf(b, "} %.9f\nluahost_http_request_duration_seconds_count", sum);
  route_labels(b, method, route);
  lh_buf_printf(b, "} %llu\n", cum);
}

static void duration_family(lh_buf_t *b) {
  family(b, "luahost_http_request_duration_seconds", "histogram",
         "Time from a request's first byte to its response, by method and route template.");
  int n = atomic_load(&nroutes);
  if (n > LH_METRICS_MAX_SERIES)
    n = LH_METRICS_MAX_SERIES;
  for (int i = 0; i < n; i++)
    if (atomic_load_explicit(&routes[i].ready, memory_order_acquire))
      histogram(b, &routes[i], routes[i].method, routes[i].route);
  unsigned long long other = 0;
  for (int i = 0; i <= LH_METRICS_BUCKETS; i++)
    other += atomic_load_explicit(&route_other.bucket[i], memory_order_relaxed);
  if (other)
    histogram(b, &route_other, "(other)", "(other)");
}

static unsigned long long pool_value(lh_pool_t *p, int which) {
  switch (which) {
  case 0: return lh_pool_queued(p);
  case 1: return lh_pool_running(p);
  default: return lh_pool_rejected(p);
  }
}

/* One family with a sample per registered pool (the host's, and any a binding or a test build
 * adds). which: 0 queued, 1 running, 2 rejected. */
static void pool_family(lh_buf_t *b, const char *name, const char *type, const char *help,
                        int which) {
  family(b, name, type, help);
  lh_pool_t *p;
  for (unsigned i = 0; (p = lh_pools_at(i)) != NULL; i++) {
    lh_buf_printf(b, "%s{pool=\"", name);
    label_value(b, lh_pool_name(p));
    lh_buf_printf(b, "\"} %llu\n", pool_value(p, which));
  }
}

static void script_counters(lh_buf_t *b) {
  int n = atomic_load(&ncounters);
  for (int i = 0; i < n; i++) {
    const lh_script_counter_t *c = &counters[i];
    lh_buf_printf(b, "# HELP luahost_%s ", c->name);
    for (const char *h = c->help; *h; h++) {
      if (*h == '\\')
        lh_buf_puts(b, "\\\\");
      else if (*h == '\n')
        lh_buf_puts(b, "\\n");
      else
        lh_buf_putc(b, *h);
    }
    lh_buf_printf(b, "\n# TYPE luahost_%s counter\nluahost_%s %llu\n", c->name, c->name,
                  atomic_load_explicit(&counters[i].value, memory_order_relaxed));
  }
}

/* Reads a whole small file of /proc into buf (NUL-terminated); 0 or -1. */
static int read_proc(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = '\0';
  return n > 0 ? 0 : -1;
}

/* The boot time (the "btime" line of /proc/stat, after lines of any length), or 0. */
static unsigned long long boot_time(void) {
  static atomic_ullong cached;
  unsigned long long t = atomic_load(&cached);
  if (t)
    return t;
  FILE *f = fopen("/proc/stat", "r");
  if (!f)
    return 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0)
    if (sscanf(line, "btime %llu", &t) == 1)
      break;
  free(line);
  fclose(f);
  atomic_store(&cached, t);
  return t;
}

static void process_families(lh_buf_t *b) {
  char stat[1024];
  long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  const char *p = read_proc("/proc/self/stat", stat, sizeof(stat)) == 0 ? strrchr(stat, ')') : NULL;
  unsigned long utime, stime, vsize;
  unsigned long long start;
  long rss;
  /* After the command's ")": state, then fields 4-13, utime (14), stime (15), fields 16-21,
   * starttime (22), vsize (23) and rss (24) (proc(5)). */
  if (p && ticks > 0 && page > 0 &&
      sscanf(p + 1,
             " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu "
             "%lu %ld",
             &utime, &stime, &start, &vsize, &rss) == 5) {
    family(b, "process_cpu_seconds_total", "counter",
           "User and system CPU time spent, in seconds.");
    lh_buf_printf(b, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)ticks);
    family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    lh_buf_printf(b, "process_resident_memory_bytes %lld\n", (long long)rss * page);
    family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    lh_buf_printf(b, "process_virtual_memory_bytes %lu\n", vsize);
    unsigned long long btime = boot_time();
    if (btime) {
      family(b, "process_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch, in seconds.");
      lh_buf_printf(b, "process_start_time_seconds %.2f\n",
                    (double)btime + (double)start / (double)ticks);
    }
  }
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    long fds = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
      if (de->d_name[0] != '.')
        fds++;
    closedir(d);
    family(b, "process_open_fds", "gauge", "Open file descriptors.");
    lh_buf_printf(b, "process_open_fds %ld\n", fds - 1); /* not the one opendir used */
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    lh_buf_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
  }
}

void lh_metrics_render(lh_buf_t *b, lh_server_t *srv, const char *generation) {
  requests_family(b);
  duration_family(b);
  family(b, "luahost_connections", "gauge", "Open client connections.");
  lh_buf_printf(b, "luahost_connections %d\n", atomic_load(&srv->connections));
  pool_family(b, "luahost_pool_jobs_queued", "gauge", "Jobs waiting for a pool thread.", 0);
  pool_family(b, "luahost_pool_jobs_running", "gauge", "Jobs being worked on by pool threads.", 1);
  pool_family(b, "luahost_pool_jobs_rejected_total", "counter",
              "Jobs refused because the pool's queue was full.", 2);
  family(b, "luahost_script_budget_exceeded_total", "counter",
         "Script tasks stopped for running past their time budget.");
  lh_buf_printf(b, "luahost_script_budget_exceeded_total %llu\n", atomic_load(&budget_exceeded));
  family(b, "luahost_reloads_total", "counter", "Live reloads of the scripts, by result.");
  lh_buf_printf(b, "luahost_reloads_total{result=\"ok\"} %llu\n", atomic_load(&reloads_ok));
  lh_buf_printf(b, "luahost_reloads_total{result=\"failed\"} %llu\n", atomic_load(&reloads_failed));
  family(b, "luahost_generation_info", "gauge",
         "The live script generation (label id: deprecated, use generation).");
  lh_buf_puts(b, "luahost_generation_info{generation=\"");
  label_value(b, generation ? generation : "");
  lh_buf_puts(b, "\",id=\"");
  label_value(b, generation ? generation : "");
  lh_buf_puts(b, "\"} 1\n");
  family(b, "luahost_build_info", "gauge", "The luahost version.");
  lh_buf_puts(b, "luahost_build_info{version=\"");
  label_value(b, LH_VERSION);
  lh_buf_puts(b, "\"} 1\n");
  int db = lh_ready_state("database");
  if (db >= 0) {
    family(b, "luahost_database_up", "gauge",
           "1 when the database answered the host's last readiness ping, else 0.");
    lh_buf_printf(b, "luahost_database_up %d\n", db);
  }
  script_counters(b);
  family(b, "luahost_requests_total", "counter",
         "deprecated: use luahost_http_requests_total. Requests answered, by status.");
  for (int s = 100; s < LH_STATUS_SLOTS; s++) {
    unsigned long long n = atomic_load(&srv->status_count[s]);
    if (n)
      lh_buf_printf(b, "luahost_requests_total{status=\"%d\"} %llu\n", s, n);
  }
  pool_family(b, "luahost_pool_queued", "gauge",
              "deprecated: use luahost_pool_jobs_queued. Jobs waiting for a pool thread.", 0);
  pool_family(b, "luahost_pool_running", "gauge",
              "deprecated: use luahost_pool_jobs_running. Jobs being worked on by pool threads.",
              1);
  process_families(b);
}
