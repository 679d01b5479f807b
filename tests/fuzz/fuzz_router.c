/* libFuzzer target: the segment-trie router (host/router.c) against a brute-force matcher that
 * reads the rules of router.h literally. Input lines: "<m><pattern>" declares a route (m a method
 * digit 0-6), "?<m><path>" matches a path. Every route the router accepts is also given to the
 * brute force; both must agree on the route, its parameters, and the methods of a 405. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "router.h"

#define MAX_ROUTES 32

typedef struct {
  lh_method_t method;
  char pattern[256];
  int id;
} route_t;

static void fail(const char *what, const char *path) {
  fprintf(stderr, "fuzz_router: %s (path '%s')\n", what, path);
  abort();
}

/* Splits a path into segments by the documented rules: "/" alone is the root; otherwise one
 * trailing slash is dropped and every remaining segment must be non-empty. Returns the number of
 * segments, or -1 when the path can match nothing. */
static int split(const char *p, size_t len, const char **seg, size_t *seglen) {
  if (len == 0 || p[0] != '/')
    return -1;
  if (len == 1)
    return 0;
  if (p[len - 1] == '/')
    len--;
  int n = 0;
  size_t i = 1;
  for (;;) {
    size_t j = i;
    while (j < len && p[j] != '/')
      j++;
    if (j == i || n == LH_ROUTER_MAX_SEGMENTS + 1)
      return -1;
    seg[n] = p + i;
    seglen[n++] = j - i;
    if (j >= len)
      return n;
    i = j + 1;
  }
}

static int is_param(const char *s, size_t n) {
  return n >= 2 && s[0] == '{' && s[n - 1] == '}';
}

/* How well a route's shape fits a path: -1 no fit; otherwise a bit string where, from the first
 * segment on, a literal segment scores higher than a parameter (literals win, left to right). */
static long long fit(const route_t *r, const char **ps, const size_t *pl, int pn, size_t *offs,
                     size_t *lens, const char *path) {
  const char *rs[LH_ROUTER_MAX_SEGMENTS + 2];
  size_t rl[LH_ROUTER_MAX_SEGMENTS + 2];
  int rn = split(r->pattern, strlen(r->pattern), rs, rl);
  if (rn != pn)
    return -1;
  long long score = 0;
  int np = 0;
  for (int i = 0; i < pn; i++) {
    score <<= 1;
    if (is_param(rs[i], rl[i])) {
      offs[np] = (size_t)(ps[i] - path);
      lens[np++] = pl[i];
    } else if (rl[i] == pl[i] && memcmp(rs[i], ps[i], pl[i]) == 0) {
      score |= 1;
    } else {
      return -1;
    }
  }
  return score;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lh_router_t *router;
  if (lh_router_create(&router) != 0)
    return 0;
  route_t routes[MAX_ROUTES];
  int nroutes = 0;
  char line[256];
  size_t pos = 0;
  while (pos < size) {
    size_t end = pos;
    while (end < size && data[end] != '\n')
      end++;
    size_t n = end - pos < sizeof(line) - 1 ? end - pos : sizeof(line) - 1;
    memcpy(line, data + pos, n);
    line[n] = '\0';
    pos = end + 1;
    if (n >= 2 && line[0] >= '0' && line[0] <= '6' && nroutes < MAX_ROUTES) {
      route_t *r = &routes[nroutes];
      r->method = (lh_method_t)(line[0] - '0');
      snprintf(r->pattern, sizeof(r->pattern), "%s", line + 1);
      if (strlen(r->pattern) != n - 1)
        continue; /* a NUL inside: the router sees a C string */
      r->id = nroutes;
      char err[200];
      if (lh_router_add(router, r->method, r->pattern, r->id, err, sizeof(err)) == 0)
        nroutes++;
      continue;
    }
    if (n < 2 || line[0] != '?')
      continue;
    lh_method_t m = (lh_method_t)((unsigned char)line[1] % LH_M__COUNT);
    const char *path = line + 2;
    size_t plen = n - 2;
    /* brute force */
    const char *ps[LH_ROUTER_MAX_SEGMENTS + 2];
    size_t pl[LH_ROUTER_MAX_SEGMENTS + 2];
    int pn = split(path, plen, ps, pl);
    long long best = -1;
    int best_id = -1;
    unsigned allowed = 0;
    size_t offs[LH_ROUTER_MAX_PARAMS], lens[LH_ROUTER_MAX_PARAMS];
    size_t boffs[LH_ROUTER_MAX_PARAMS], blens[LH_ROUTER_MAX_PARAMS];
    /* The best shape wins (literals before parameters, left to right); HEAD is served by a GET
     * route of that shape when it has no HEAD route of its own. */
    for (int i = 0; i < nroutes && pn >= 0; i++) {
      long long s = fit(&routes[i], ps, pl, pn, offs, lens, path);
      if (s < 0)
        continue;
      allowed |= 1u << routes[i].method;
      int serves = routes[i].method == m || (m == LH_M_HEAD && routes[i].method == LH_M_GET);
      if (serves && (s > best || (s == best && routes[i].method == m))) {
        best = s;
        best_id = routes[i].id;
        memcpy(boffs, offs, sizeof(offs));
        memcpy(blens, lens, sizeof(lens));
      }
    }
    lh_route_match_t match;
    unsigned got_allowed = 0;
    int rc = lh_router_match(router, m, path, plen, &match, &got_allowed);
    if (best_id >= 0) {
      if (rc != 0)
        fail("the router found no route where one fits", path);
      if (match.route_id != best_id)
        fail("the router chose another route", path);
      for (int i = 0; i < match.nparams; i++)
        if (match.params[i].off != boffs[i] || match.params[i].len != blens[i])
          fail("a parameter differs", path);
    } else if (rc == 0) {
      fail("the router matched where no route fits", path);
    } else if (allowed) {
      if (allowed & (1u << LH_M_GET))
        allowed |= 1u << LH_M_HEAD;
      if (rc != LH_EMETHOD || got_allowed != allowed)
        fail("the 405 differs", path);
    } else if (rc != LH_ENOTFOUND) {
      fail("a path no route fits is not 404", path);
    }
  }
  lh_router_free(router);
  return 0;
}
