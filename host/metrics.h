/* metrics.h: the process's metrics and their Prometheus text rendering (docs/operations.md lists
 * the families). Every recording function is thread-safe and lock-free: workers call them from
 * their own threads, pool threads too. Series live in fixed tables: once a series exists,
 * recording into it allocates nothing and takes no lock.
 *
 * Requests are counted per (method, route template, status code) and timed per (method, route
 * template). The route is the template a request matched ("/users/{id}"), a reserved path the
 * host answered ("/metrics"), or "" for no route, labelled "(unmatched)": never the raw path, so
 * the number of series follows the scripts, not the clients. Live reload can bring new templates,
 * so the tables are bounded (LH_METRICS_MAX_SERIES label sets each); past that, requests are
 * counted under route="(other)" (method "(other)" too), which is bounded by the status codes. */
#ifndef LH_METRICS_H
#define LH_METRICS_H

#include "buf.h"
#include "server.h"

#define LH_METRICS_MAX_SERIES 1024 /* (method, route) and (method, route, code) label sets */
#define LH_METRICS_ROUTE_MAX 256   /* longest route label kept (longer ones are cut) */
#define LH_METRICS_MAX_COUNTERS 64 /* counters the scripts may declare */
#define LH_METRICS_NAME_MAX 64     /* longest script counter name (without "luahost_") */
#define LH_METRICS_HELP_MAX 200    /* longest script counter help text */
#define LH_METRICS_BUCKETS 13      /* finite histogram buckets, 0.001 s to 10 s */

/* One response: method is the request's method name (NULL or "" before one was parsed), route as
 * above, status the HTTP status, duration_ns from the request's first byte. */
void lh_metrics_request(const char *method, const char *route, int status,
                        unsigned long long duration_ns);
/* A task ran past its script budget (vm.c). */
void lh_metrics_budget_exceeded(void);
/* A live reload finished: ok 1 when the new generation serves, 0 when it was refused. */
void lh_metrics_reload(int ok);

/* Script counters (luahost.metrics, lua_metrics.c). Declares the counter luahost_<name>, or
 * finds it when it exists (every worker and every generation declares its counters again; the
 * first help text stays). name: [a-z_][a-z0-9_]* ending in "_total", at most
 * LH_METRICS_NAME_MAX bytes, not one of the host's own families. Returns the counter's index, or
 * LH_EINVAL (with why in err) or LH_ELIMIT past LH_METRICS_MAX_COUNTERS. */
int lh_metrics_counter(const char *name, const char *help, char *err, size_t errlen);
/* Adds n to the counter of that index (from lh_metrics_counter). */
void lh_metrics_counter_add(int index, unsigned long long n);

/* Appends the Prometheus text exposition (format 0.0.4) of every family to b. srv gives the
 * connection gauge and the deprecated per-status counts; generation labels the live scripts. */
void lh_metrics_render(lh_buf_t *b, lh_server_t *srv, const char *generation);

/* Unit tests only: forgets every series and counter. Not thread-safe. */
void lh_metrics_reset(void);

#endif
