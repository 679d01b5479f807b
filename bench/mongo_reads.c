/* mongo_reads.c: the raw-driver reference of bench/run's database scenario. It does what luahost
 * does for one authenticated `GET /users/{id}` of another user, without HTTP, Lua or thread
 * hand-offs: two reads by _id with the same projection (the caller, then the target), on THREADS
 * threads that each hold a client from one mongoc_client_pool_t, for SECONDS after one second of
 * warm-up. Prints "measuring" when the window opens, then one JSON line: {"ops", "seconds",
 * "cpu_s", "p99_ms", "errors", "csw"}, where one op is the two reads of one request, and cpu_s and
 * csw (context switches) are this process's, all threads, over the window.
 *
 *   mongo_reads URI DB COLLECTION THREADS SECONDS CALLER_HEX IDS_FILE
 *
 * IDS_FILE lists target ids (24 hex digits a line); thread i starts at line i and steps through. */
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
  mongoc_client_pool_t *pool;
  const char *db, *coll;
  bson_oid_t caller;
  bson_oid_t *ids;
  size_t nids, start;
  uint32_t *lat_us; /* latencies of the measured ops */
  size_t nlat, cap;
  unsigned long errors;
} worker_t;

static atomic_int phase; /* 0 warm-up, 1 measuring, 2 stop */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long csw(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_nvcsw + ru.ru_nivcsw;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* find_one({_id}, {projection: the public fields, limit: 1}), as lib/users.lua asks for. */
static int read_one(mongoc_collection_t *c, const bson_oid_t *id, const bson_t *opts) {
  bson_t filter = BSON_INITIALIZER;
  BSON_APPEND_OID(&filter, "_id", id);
  mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, opts, NULL);
  const bson_t *doc;
  int found = mongoc_cursor_next(cur, &doc);
  bson_error_t err;
  int failed = mongoc_cursor_error(cur, &err);
  mongoc_cursor_destroy(cur);
  bson_destroy(&filter);
  return found && !failed ? 0 : -1;
}

static void *run(void *arg) {
  worker_t *w = arg;
  mongoc_client_t *client = mongoc_client_pool_pop(w->pool);
  mongoc_collection_t *c = mongoc_client_get_collection(client, w->db, w->coll);
  bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "username", BCON_INT32(1),
                          "username_lc", BCON_INT32(1), "userage", BCON_INT32(1), "role",
                          BCON_INT32(1), "token_version", BCON_INT32(1), "created_at",
                          BCON_INT32(1), "updated_at", BCON_INT32(1), "}", "limit", BCON_INT64(1));
  size_t i = w->start;
  int p;
  while ((p = atomic_load(&phase)) != 2) {
    double t0 = now_s();
    int rc = read_one(c, &w->caller, opts);
    if (rc == 0)
      rc = read_one(c, &w->ids[i++ % w->nids], opts);
    double t1 = now_s();
    if (p != 1)
      continue;
    if (rc != 0)
      w->errors++;
    if (w->nlat == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 4096;
      uint32_t *n = realloc(w->lat_us, w->cap * sizeof *n);
      if (!n) {
        fprintf(stderr, "mongo_reads: out of memory\n");
        exit(1);
      }
      w->lat_us = n;
    }
    w->lat_us[w->nlat++] = (uint32_t)((t1 - t0) * 1e6);
  }
  bson_destroy(opts);
  mongoc_collection_destroy(c);
  mongoc_client_pool_push(w->pool, client);
  return NULL;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static size_t load_ids(const char *path, bson_oid_t **out) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = 0, cap = 0;
  bson_oid_t *ids = NULL;
  char line[64];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (!bson_oid_is_valid(line, strlen(line)))
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 1024;
      bson_oid_t *m = realloc(ids, cap * sizeof *m);
      if (!m)
        break;
      ids = m;
    }
    bson_oid_init_from_string(&ids[n++], line);
  }
  fclose(f);
  *out = ids;
  return n;
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: mongo_reads URI DB COLLECTION THREADS SECONDS CALLER_HEX IDS_FILE\n");
    return 2;
  }
  int nthreads = atoi(argv[4]);
  double seconds = atof(argv[5]);
  if (nthreads < 1 || nthreads > 1024 || seconds <= 0 || !bson_oid_is_valid(argv[6], 24)) {
    fprintf(stderr, "mongo_reads: bad THREADS, SECONDS or CALLER_HEX\n");
    return 2;
  }
  bson_oid_t *ids;
  size_t nids = load_ids(argv[7], &ids);
  if (nids == 0) {
    fprintf(stderr, "mongo_reads: no ids in %s\n", argv[7]);
    return 2;
  }
  mongoc_init();
  bson_error_t err;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &err);
  if (!uri) {
    fprintf(stderr, "mongo_reads: %s\n", err.message);
    return 2;
  }
  mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
  mongoc_client_pool_max_size(pool, (uint32_t)nthreads);
  worker_t *ws = calloc((size_t)nthreads, sizeof *ws);
  pthread_t *ts = calloc((size_t)nthreads, sizeof *ts);
  if (!ws || !ts)
    return 1;
  for (int i = 0; i < nthreads; i++) {
    ws[i] = (worker_t){.pool = pool, .db = argv[2], .coll = argv[3], .ids = ids, .nids = nids};
    ws[i].start = (size_t)i * 7919 % nids;
    bson_oid_init_from_string(&ws[i].caller, argv[6]);
    pthread_create(&ts[i], NULL, run, &ws[i]);
  }
  struct timespec warm = {1, 0};
  nanosleep(&warm, NULL);
  double c0 = cpu_s(), t0 = now_s();
  long s0 = csw();
  atomic_store(&phase, 1);
  printf("measuring\n");
  fflush(stdout);
  struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&d, NULL);
  atomic_store(&phase, 2);
  double c1 = cpu_s(), t1 = now_s();
  long s1 = csw();
  size_t total = 0;
  unsigned long errors = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(ts[i], NULL);
    total += ws[i].nlat;
    errors += ws[i].errors;
  }
  uint32_t *all = malloc((total ? total : 1) * sizeof *all);
  size_t k = 0;
  for (int i = 0; i < nthreads; i++) {
    if (ws[i].nlat)
      memcpy(all + k, ws[i].lat_us, ws[i].nlat * sizeof *all);
    k += ws[i].nlat;
    free(ws[i].lat_us);
  }
  qsort(all, total, sizeof *all, cmp_u32);
  double p99 = total ? all[(size_t)((double)(total - 1) * 0.99)] / 1000.0 : 0;
  printf("{\"ops\": %zu, \"seconds\": %.3f, \"cpu_s\": %.4f, \"p99_ms\": %.3f, \"errors\": %lu, "
         "\"csw\": %ld}\n",
         total, t1 - t0, c1 - c0, p99, errors, s1 - s0);
  free(all);
  free(ws);
  free(ts);
  free(ids);
  mongoc_client_pool_destroy(pool);
  mongoc_uri_destroy(uri);
  mongoc_cleanup();
  return 0;
}
