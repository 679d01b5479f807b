/* test_router.c: unit tests for host/router.c, one case per rule in router.h, plus a
 * micro-benchmark that prints the cost of one match on a 20-route table. */
#include "lh.h"
#include "lh_test.h"
#include "router.h"

#include <string.h>

static lh_router_t *new_router(void) {
  lh_router_t *r = NULL;
  LH_CHECK_INT(lh_router_create(&r), 0);
  return r;
}

static int add(lh_router_t *r, lh_method_t m, const char *pattern, int id) {
  char err[128] = "";
  return lh_router_add(r, m, pattern, id, err, sizeof err);
}

static int match(const lh_router_t *r, lh_method_t m, const char *path, lh_route_match_t *out,
                 unsigned *allowed) {
  return lh_router_match(r, m, path, strlen(path), out, allowed);
}

/* Returns the matched route id, or the error code. */
static int route_of(const lh_router_t *r, lh_method_t m, const char *path) {
  lh_route_match_t mt;
  unsigned allowed;
  int rc = match(r, m, path, &mt, &allowed);
  return rc < 0 ? rc : mt.route_id;
}

static int param_is(const char *path, const lh_route_match_t *m, int i, const char *name,
                    const char *value) {
  const lh_route_param_t *p = &m->params[i];
  return p->name_len == strlen(name) && memcmp(p->name, name, p->name_len) == 0 &&
         p->len == strlen(value) && memcmp(path + p->off, value, p->len) == 0;
}

static void test_methods(void) {
  LH_CHECK_INT(lh_method_parse("GET", 3), LH_M_GET);
  LH_CHECK_INT(lh_method_parse("HEAD", 4), LH_M_HEAD);
  LH_CHECK_INT(lh_method_parse("POST", 4), LH_M_POST);
  LH_CHECK_INT(lh_method_parse("PUT", 3), LH_M_PUT);
  LH_CHECK_INT(lh_method_parse("PATCH", 5), LH_M_PATCH);
  LH_CHECK_INT(lh_method_parse("DELETE", 6), LH_M_DELETE);
  LH_CHECK_INT(lh_method_parse("OPTIONS", 7), LH_M_OPTIONS);
  LH_CHECK_INT(lh_method_parse("get", 3), LH_ENOTFOUND);
  LH_CHECK_INT(lh_method_parse("GETX", 3), LH_M_GET); /* length bounds the comparison */
  LH_CHECK_INT(lh_method_parse("GETX", 4), LH_ENOTFOUND);
  LH_CHECK_INT(lh_method_parse("TRACE", 5), LH_ENOTFOUND);
  LH_CHECK_INT(lh_method_parse("", 0), LH_ENOTFOUND);
  for (int m = 0; m < LH_M__COUNT; m++) {
    const char *name = lh_method_name((lh_method_t)m);
    LH_CHECK_INT(lh_method_parse(name, strlen(name)), m);
  }
}

static void test_literal_and_root(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users", 2), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/all/active", 3), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/"), 1);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users"), 2);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/all/active"), 3);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/all"), LH_ENOTFOUND); /* inner node, no route */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/user"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/usersx"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/Users"), LH_ENOTFOUND); /* case-sensitive */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/all/active/more"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, ""), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "users"), LH_ENOTFOUND);
  lh_router_free(r);
}

static void test_trailing_slash(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users/", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}", 2), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users"), 1);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/"), 1);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/7/"), 2);
  /* The pattern with and without a trailing slash is the same route. */
  LH_CHECK_INT(add(r, LH_M_GET, "/users", 3), LH_EEXIST);
  lh_router_free(r);
}

static void test_empty_segments(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/a/b", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/a/{x}", 2), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/a", 3), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "//a/b"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/a//b"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/a//"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/a/b//"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "//"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/a/"), 3);
  lh_router_free(r);
  /* With a root route too: "//" is an empty segment, not "/" with a trailing slash. */
  r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/", 1), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/"), 1);
  LH_CHECK_INT(route_of(r, LH_M_GET, "//"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "///"), LH_ENOTFOUND);
  lh_router_free(r);
}

static void test_params(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/orgs/{org}/members/{user_1}", 2), 0);
  lh_route_match_t m;
  unsigned allowed;
  const char *p = "/users/42";
  LH_CHECK_INT(match(r, LH_M_GET, p, &m, &allowed), 0);
  LH_CHECK_INT(m.route_id, 1);
  LH_CHECK_INT(m.nparams, 1);
  LH_CHECK(param_is(p, &m, 0, "id", "42"));
  p = "/orgs/acme/members/bob";
  LH_CHECK_INT(match(r, LH_M_GET, p, &m, &allowed), 0);
  LH_CHECK_INT(m.route_id, 2);
  LH_CHECK_INT(m.nparams, 2);
  LH_CHECK(param_is(p, &m, 0, "org", "acme"));
  LH_CHECK(param_is(p, &m, 1, "user_1", "bob"));
  /* Percent-encoded bytes are returned as they are. */
  p = "/users/a%2Fb%20c";
  LH_CHECK_INT(match(r, LH_M_GET, p, &m, &allowed), 0);
  LH_CHECK(param_is(p, &m, 0, "id", "a%2Fb%20c"));
  /* A parameter matches one non-empty segment only. */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/"), LH_ENOTFOUND);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/1/2"), LH_ENOTFOUND);
  /* The query string is not part of the path: a caller that passes it gets it in the value. */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/1"), 1);
  lh_router_free(r);
}

static void test_param_names_per_route(void) {
  /* Two methods share one node but name its parameter differently. */
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}", 1), 0);
  LH_CHECK_INT(add(r, LH_M_DELETE, "/users/{user_id}", 2), 0);
  lh_route_match_t m;
  unsigned allowed;
  const char *p = "/users/9";
  LH_CHECK_INT(match(r, LH_M_GET, p, &m, &allowed), 0);
  LH_CHECK(param_is(p, &m, 0, "id", "9"));
  LH_CHECK_INT(match(r, LH_M_DELETE, p, &m, &allowed), 0);
  LH_CHECK_INT(m.route_id, 2);
  LH_CHECK(param_is(p, &m, 0, "user_id", "9"));
  lh_router_free(r);
}

static void test_literal_precedence_and_backtracking(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users/me", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}", 2), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/me/x", 3), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}/y", 4), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/me"), 1);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/you"), 2);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/me/x"), 3);
  /* The literal branch "me" has no "y" below it: the matcher backs up to the parameter. */
  lh_route_match_t m;
  unsigned allowed;
  const char *p = "/users/me/y";
  LH_CHECK_INT(match(r, LH_M_GET, p, &m, &allowed), 0);
  LH_CHECK_INT(m.route_id, 4);
  LH_CHECK(param_is(p, &m, 0, "id", "me"));
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/you/x"), LH_ENOTFOUND);
  lh_router_free(r);
}

static void test_backtracking_by_method(void) {
  /* The literal node exists but only for GET; DELETE /users/me must reach /users/{id}. */
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users/me", 1), 0);
  LH_CHECK_INT(add(r, LH_M_DELETE, "/users/{id}", 2), 0);
  LH_CHECK_INT(route_of(r, LH_M_DELETE, "/users/me"), 2);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/me"), 1);
  /* PUT matches nothing: both nodes contribute to the allowed set. */
  lh_route_match_t m;
  unsigned allowed = 0;
  LH_CHECK_INT(match(r, LH_M_PUT, "/users/me", &m, &allowed), LH_EMETHOD);
  LH_CHECK_INT(allowed, (1u << LH_M_GET) | (1u << LH_M_HEAD) | (1u << LH_M_DELETE));
  lh_router_free(r);
}

static void test_method_not_allowed(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/users", 1), 0);
  LH_CHECK_INT(add(r, LH_M_POST, "/users", 2), 0);
  LH_CHECK_INT(add(r, LH_M_PATCH, "/items/{id}", 3), 0);
  lh_route_match_t m;
  unsigned allowed = 123;
  LH_CHECK_INT(match(r, LH_M_DELETE, "/users", &m, &allowed), LH_EMETHOD);
  LH_CHECK_INT(allowed, (1u << LH_M_GET) | (1u << LH_M_HEAD) | (1u << LH_M_POST));
  LH_CHECK_INT(match(r, LH_M_GET, "/items/5", &m, &allowed), LH_EMETHOD);
  LH_CHECK_INT(allowed, 1u << LH_M_PATCH);
  allowed = 123;
  LH_CHECK_INT(match(r, LH_M_GET, "/nothing", &m, &allowed), LH_ENOTFOUND);
  LH_CHECK_INT(allowed, 0);
  /* An inner node with no routes gives 404, not 405. */
  LH_CHECK_INT(match(r, LH_M_GET, "/items", &m, &allowed), LH_ENOTFOUND);
  /* A NULL allowed pointer is accepted. */
  LH_CHECK_INT(lh_router_match(r, LH_M_PUT, "/users", 6, &m, NULL), LH_EMETHOD);
  lh_router_free(r);
}

static void test_head_falls_back_to_get(void) {
  lh_router_t *r = new_router();
  LH_CHECK_INT(add(r, LH_M_GET, "/a", 1), 0);
  LH_CHECK_INT(add(r, LH_M_GET, "/b", 2), 0);
  LH_CHECK_INT(add(r, LH_M_HEAD, "/b", 3), 0);
  LH_CHECK_INT(add(r, LH_M_POST, "/c", 4), 0);
  LH_CHECK_INT(route_of(r, LH_M_HEAD, "/a"), 1);
  LH_CHECK_INT(route_of(r, LH_M_HEAD, "/b"), 3); /* a declared HEAD route wins */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/b"), 2);
  LH_CHECK_INT(route_of(r, LH_M_HEAD, "/c"), LH_EMETHOD);
  /* GET does not fall back to HEAD. */
  LH_CHECK_INT(add(r, LH_M_HEAD, "/d", 5), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, "/d"), LH_EMETHOD);
  lh_router_free(r);
}

static void test_bad_patterns(void) {
  lh_router_t *r = new_router();
  char err[128];
  static const char *const bad[] = {
      "",           "users",
      "/a//b",      "//",
      "/{}",        "/{1id}",
      "/a//",       "/{a-b}",
      "/x{id}",     "/{id}x",
      "/a}b",       "/{a{b}",
      "/{id}/{id}", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
  };
  for (size_t i = 0; i < LH_ARRAY_SIZE(bad); i++) {
    err[0] = '\0';
    int rc = lh_router_add(r, LH_M_GET, bad[i], 1, err, sizeof err);
    if (rc != LH_EINVAL)
      fprintf(stderr, "  pattern '%s' gave %d\n", bad[i], rc);
    LH_CHECK_INT(rc, LH_EINVAL);
    LH_CHECK(err[0] != '\0');
  }
  /* Eight parameters are fine; 33 segments are too many. */
  LH_CHECK_INT(add(r, LH_M_GET, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", 1), 0);
  char deep[200] = "";
  for (int i = 0; i < LH_ROUTER_MAX_SEGMENTS + 1; i++)
    strcat(deep, "/s");
  LH_CHECK_INT(add(r, LH_M_GET, deep, 2), LH_EINVAL);
  deep[strlen(deep) - 2] = '\0';
  LH_CHECK_INT(add(r, LH_M_GET, deep, 2), 0);
  LH_CHECK_INT(route_of(r, LH_M_GET, deep), 2);
  LH_CHECK_INT(lh_router_add(r, LH_M_GET, "/x", -1, err, sizeof err), LH_EINVAL);
  LH_CHECK_INT(lh_router_add(r, LH_M__COUNT, "/x", 1, err, sizeof err), LH_EINVAL);
  /* A failed add leaves no route behind. */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/a/b"), LH_ENOTFOUND);
  lh_router_free(r);
}

static void test_duplicates(void) {
  lh_router_t *r = new_router();
  char err[128] = "";
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}", 1), 0);
  LH_CHECK_INT(lh_router_add(r, LH_M_GET, "/users/{uid}", 2, err, sizeof err), LH_EEXIST);
  LH_CHECK(strstr(err, "duplicate") != NULL);
  LH_CHECK_INT(add(r, LH_M_GET, "/users/{id}/", 3), LH_EEXIST);
  LH_CHECK_INT(add(r, LH_M_POST, "/users/{uid}", 4), 0); /* other method: fine */
  LH_CHECK_INT(add(r, LH_M_GET, "/users/me", 5), 0);     /* literal vs param: fine */
  LH_CHECK_INT(route_of(r, LH_M_GET, "/users/x"), 1);
  lh_router_free(r);
}

static void test_many_children(void) {
  lh_router_t *r = new_router();
  char p[32];
  for (int i = 0; i < 100; i++) {
    snprintf(p, sizeof p, "/r%d", i);
    LH_CHECK_INT(add(r, LH_M_GET, p, i), 0);
  }
  for (int i = 0; i < 100; i++) {
    snprintf(p, sizeof p, "/r%d", i);
    LH_CHECK_INT(route_of(r, LH_M_GET, p), i);
  }
  lh_router_free(r);
  lh_router_free(NULL);
}

static void test_benchmark(void) {
  static const char *const patterns[20] = {
      "/healthz",
      "/readyz",
      "/metrics",
      "/auth/login",
      "/auth/logout",
      "/auth/refresh",
      "/auth/password",
      "/users",
      "/users/me",
      "/users/{id}",
      "/users/{id}/role",
      "/users/{id}/sessions",
      "/users/{id}/tokens",
      "/orgs",
      "/orgs/{org}",
      "/orgs/{org}/members",
      "/orgs/{org}/members/{user}",
      "/admin/reload",
      "/admin/generation",
      "/admin/pools/{name}",
  };
  lh_router_t *r = new_router();
  for (int i = 0; i < 20; i++)
    LH_CHECK_INT(add(r, LH_M_GET, patterns[i], i), 0);
  static const char *const paths[] = {
      "/healthz",        "/users/me", "/users/12345/sessions", "/orgs/acme/members/bob",
      "/admin/pools/db", "/nope/x"};
  const int iters = 200000;
  unsigned long long t0 = lh_now_ns();
  int sink = 0;
  for (int i = 0; i < iters; i++) {
    for (size_t k = 0; k < LH_ARRAY_SIZE(paths); k++)
      sink += route_of(r, LH_M_GET, paths[k]);
  }
  unsigned long long t1 = lh_now_ns();
  double per = (double)(t1 - t0) / ((double)iters * LH_ARRAY_SIZE(paths));
  printf("     router: %.1f ns per match (20 routes, mixed paths, sink %d)\n", per, sink & 1);
  lh_router_free(r);
}

int main(void) {
  LH_RUN(test_methods);
  LH_RUN(test_literal_and_root);
  LH_RUN(test_trailing_slash);
  LH_RUN(test_empty_segments);
  LH_RUN(test_params);
  LH_RUN(test_param_names_per_route);
  LH_RUN(test_literal_precedence_and_backtracking);
  LH_RUN(test_backtracking_by_method);
  LH_RUN(test_method_not_allowed);
  LH_RUN(test_head_falls_back_to_get);
  LH_RUN(test_bad_patterns);
  LH_RUN(test_duplicates);
  LH_RUN(test_many_children);
  LH_RUN(test_benchmark);
  return lh_test_done();
}
