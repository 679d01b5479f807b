/* router.h: method + path -> route, in C. Paths are '/'-separated literal segments and `{name}`
 * parameters that match one non-empty segment. A trailing slash is not significant ("/users/" and
 * "/users" are the same route). Matching allocates nothing: parameters come back as offsets into
 * the matched path. A router is immutable once built and belongs to one generation of one worker.
 */
#ifndef LH_ROUTER_H
#define LH_ROUTER_H

#include <stddef.h>

#define LH_ROUTER_MAX_PARAMS 8
#define LH_ROUTER_MAX_SEGMENTS 32

typedef enum {
  LH_M_GET = 0,
  LH_M_HEAD,
  LH_M_POST,
  LH_M_PUT,
  LH_M_PATCH,
  LH_M_DELETE,
  LH_M_OPTIONS,
  LH_M__COUNT
} lh_method_t;

typedef struct lh_router_s lh_router_t;

typedef struct {
  const char *name; /* parameter name, owned by the router */
  size_t name_len;
  size_t off, len; /* value = path + off, len bytes (still percent-encoded) */
} lh_route_param_t;

typedef struct {
  int route_id; /* the id given to lh_router_add */
  int nparams;
  lh_route_param_t params[LH_ROUTER_MAX_PARAMS];
} lh_route_match_t;

/* Parses "GET" etc.; returns -1 for methods the router does not know. */
int lh_method_parse(const char *s, size_t len);
const char *lh_method_name(lh_method_t m);

/* 1 when path is one the host answers itself (/healthz, /readyz, /metrics, /admin and below), so
 * scripts may not declare it; else 0. */
int lh_path_reserved(const char *path);

int lh_router_create(lh_router_t **out);
void lh_router_free(lh_router_t *r);
/* Adds method + pattern -> route_id (>= 0). Returns LH_EINVAL for a malformed pattern (must start
 * with '/', no empty segments except a trailing slash, `{name}` with name [A-Za-z_][A-Za-z0-9_]*,
 * no '{' or '}' elsewhere, no duplicate parameter names, at most LH_ROUTER_MAX_PARAMS parameters),
 * LH_ELIMIT when the same method + equivalent pattern exists (a pattern that differs only by the
 * names of its parameters is equivalent), with a reason in err. */
int lh_router_add(lh_router_t *r, lh_method_t method, const char *pattern, int route_id, char *err,
                  size_t errlen);
/* Returns 0 and fills m when method + path match. Returns LH_ENOTFOUND when no pattern matches
 * the path, or 405-style LH_EINVAL when the path matches but not for this method; then *allowed is
 * a bit set (1 << lh_method_t) of the methods that do match. `path` excludes the query string.
 * HEAD matches a GET route when no HEAD route is declared. */
int lh_router_match(const lh_router_t *r, lh_method_t method, const char *path, size_t len,
                    lh_route_match_t *m, unsigned *allowed);

#endif
