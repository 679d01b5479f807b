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

/* The paths the host answers itself; scripts may not declare a route on them. "/admin" reserves
 * its whole subtree (the host answers 404 there), and so does "/docs" (Swagger UI and its assets,
 * docs.c); the others are exact paths. */
typedef enum {
  LH_RESERVED_HEALTHZ = 0,
  LH_RESERVED_READYZ,
  LH_RESERVED_METRICS,
  LH_RESERVED_ADMIN,
  LH_RESERVED_OPENAPI,
  LH_RESERVED_DOCS,
  LH_RESERVED__COUNT
} lh_reserved_t;

/* The reserved path's text ("/healthz", ...), NULL out of range; *subtree is set to 1 when the
 * paths below it are reserved too. */
const char *lh_reserved_path_name(lh_reserved_t r, int *subtree);
/* Which reserved path the host serves for this request path (query excluded), or LH_ENOTFOUND. */
int lh_reserved_path(const char *path, size_t len);
/* Which reserved path a route pattern would collide with: the path itself or anything below it
 * (scripts may declare neither), or LH_ENOTFOUND. */
int lh_reserved_for_routes(const char *pattern, size_t len);

/* Parses "GET" etc.; returns LH_ENOTFOUND for methods the router does not know. */
int lh_method_parse(const char *s, size_t len);
const char *lh_method_name(lh_method_t m);

int lh_router_create(lh_router_t **out);
void lh_router_free(lh_router_t *r);
/* Adds method + pattern -> route_id (>= 0). Returns LH_EINVAL for a malformed pattern (must start
 * with '/', no empty segments except a trailing slash, `{name}` with name [A-Za-z_][A-Za-z0-9_]*,
 * no '{' or '}' elsewhere, no duplicate parameter names, at most LH_ROUTER_MAX_PARAMS parameters),
 * LH_EEXIST when the same method + equivalent pattern exists (a pattern that differs only by the
 * names of its parameters is equivalent), with a reason in err. */
int lh_router_add(lh_router_t *r, lh_method_t method, const char *pattern, int route_id, char *err,
                  size_t errlen);
/* Returns 0 and fills m when method + path match. Returns LH_ENOTFOUND when no pattern matches
 * the path, or LH_EMETHOD (an HTTP 405) when the path matches but not for this method; then
 * *allowed is a bit set (1 << lh_method_t) of the methods that do match. `path` excludes the query
 * string. HEAD matches a GET route when no HEAD route is declared. */
int lh_router_match(const lh_router_t *r, lh_method_t method, const char *path, size_t len,
                    lh_route_match_t *m, unsigned *allowed);

#endif
