/* test_docs.c: the /docs answers (host/docs.c) on fixture asset files: the page and each asset
 * by its exact name only, content types and caching headers, If-None-Match, the option turned
 * off, and a missing asset directory. (/openapi.json needs a VM: tests/integration/test_openapi.py
 * covers it over HTTP.) */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "docs.h"
#include "lh.h"
#include "lh_test.h"

static char dir[64];

static void fixtures(void) {
  snprintf(dir, sizeof(dir), "/tmp/lh-test-docs-XXXXXX");
  if (!mkdtemp(dir))
    abort();
  lh_test_write_file(dir, "swagger-ui.css", "body{}");
  lh_test_write_file(dir, "swagger-ui-bundle.js", "var bundle;");
  lh_test_write_file(dir, "swagger-ui-standalone-preset.js", "var preset;");
  lh_test_write_file(dir, "favicon-32x32.png", "PNG");
  lh_test_write_file(dir, "package.json", "{}");
}

static void cleanup(void) {
  static const char *const names[] = {"swagger-ui.css", "swagger-ui-bundle.js",
                                      "swagger-ui-standalone-preset.js", "favicon-32x32.png",
                                      "package.json"};
  char path[256];
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

static lh_docs_t *load(int enabled, const char *assets) {
  static lh_config_t cfg;
  lh_config_defaults(&cfg);
  cfg.docs = enabled;
  snprintf(cfg.docs_assets, sizeof(cfg.docs_assets), "%s", assets);
  lh_docs_t *d = NULL;
  LH_CHECK_INT(lh_docs_load(&d, &cfg), 0);
  LH_CHECK(d != NULL);
  return d;
}

static void ask(lh_docs_answer_t *a, const lh_docs_t *d, int method, const char *path,
                const char *inm) {
  lh_docs_answer(a, d, LH_RESERVED_DOCS, method, path, strlen(path), inm, inm ? strlen(inm) : 0,
                 NULL);
}

static void test_assets_by_exact_name(void) {
  lh_docs_t *d = load(1, dir);
  lh_docs_answer_t a;
  ask(&a, d, LH_M_GET, "/docs/swagger-ui-bundle.js", NULL);
  LH_CHECK_INT(a.status, 200);
  LH_CHECK_STR(a.content_type, "text/javascript; charset=utf-8");
  LH_CHECK_INT(a.body_len, strlen("var bundle;"));
  LH_CHECK(a.body && memcmp(a.body, "var bundle;", a.body_len) == 0);
  LH_CHECK(strstr(a.extra, "Cache-Control: public, max-age=31536000, immutable\r\n") != NULL);
  LH_CHECK(strstr(a.extra, "ETag: \"") != NULL);
  ask(&a, d, LH_M_HEAD, "/docs/swagger-ui.css", NULL);
  LH_CHECK_INT(a.status, 200);
  LH_CHECK_STR(a.content_type, "text/css; charset=utf-8");
  ask(&a, d, LH_M_GET, "/docs/favicon-32x32.png", NULL);
  LH_CHECK_STR(a.content_type, "image/png");
  static const char *const refused[] = {"/docs/package.json",        "/docs/../package.json",
                                        "/docs/%2e%2e/package.json", "/docs//swagger-ui.css",
                                        "/docs/./swagger-ui.css",    "/docs/swagger-ui.css/",
                                        "/docs/swagger-ui.cs",       "/docs/swagger-ui.cssx",
                                        "/docs/x/swagger-ui.css",    "/docs/index.htm"};
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    ask(&a, d, LH_M_GET, refused[i], NULL);
    if (a.status != 404 || !a.error_code || strcmp(a.error_code, "not_found") != 0)
      fprintf(stderr, "  %s answered %d\n", refused[i], a.status);
    LH_CHECK_INT(a.status, 404);
    LH_CHECK(a.body == NULL);
  }
  ask(&a, d, LH_M_POST, "/docs/swagger-ui.css", NULL);
  LH_CHECK_INT(a.status, 405);
  LH_CHECK_INT(a.allow, (1u << LH_M_GET) | (1u << LH_M_HEAD));
  lh_docs_free(d);
}

static void test_the_page_names_assets_with_their_hash(void) {
  lh_docs_t *d = load(1, dir);
  lh_docs_answer_t a;
  static const char *const aliases[] = {"/docs", "/docs/", "/docs/index.html"};
  const char *first = NULL;
  for (size_t i = 0; i < 3; i++) {
    ask(&a, d, LH_M_GET, aliases[i], NULL);
    LH_CHECK_INT(a.status, 200);
    LH_CHECK_STR(a.content_type, "text/html; charset=utf-8");
    LH_CHECK(strstr(a.extra, "Cache-Control: no-cache\r\n") != NULL);
    LH_CHECK(first == NULL || first == a.body);
    first = a.body;
  }
  char *page = strndup(a.body, a.body_len);
  LH_CHECK(page && strstr(page, "url: \"/openapi.json\"") != NULL);
  /* The bundle's link carries the asset's ETag as its version. */
  lh_docs_answer_t js;
  ask(&js, d, LH_M_GET, "/docs/swagger-ui-bundle.js", NULL);
  char want[64];
  snprintf(want, sizeof(want), "/docs/swagger-ui-bundle.js?v=%.16s", strstr(js.extra, "\"") + 1);
  LH_CHECK(page && strstr(page, want) != NULL);
  free(page);
  lh_docs_free(d);
}

static void test_if_none_match(void) {
  lh_docs_t *d = load(1, dir);
  lh_docs_answer_t a;
  ask(&a, d, LH_M_GET, "/docs/swagger-ui.css", NULL);
  char etag[24];
  const char *e = strstr(a.extra, "ETag: ") + 6;
  snprintf(etag, sizeof(etag), "%.*s", (int)(strchr(e, '\r') - e), e);
  char list[96];
  snprintf(list, sizeof(list), "\"0000000000000000\", W/%s", etag);
  const struct {
    const char *inm;
    int status;
  } cases[] = {{etag, 304},    {list, 304}, {"*", 304},  {" , *", 304},
               {"\"x\"", 200}, {"", 200},   {"W/", 200}, {"\"0000000000000000\"", 200}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ask(&a, d, LH_M_GET, "/docs/swagger-ui.css", cases[i].inm);
    if (a.status != cases[i].status)
      fprintf(stderr, "  If-None-Match: %s answered %d\n", cases[i].inm, a.status);
    LH_CHECK_INT(a.status, cases[i].status);
    LH_CHECK(strstr(a.extra, etag) != NULL);
    if (a.status == 304)
      LH_CHECK(a.body == NULL && a.body_len == 0);
  }
  lh_docs_free(d);
}

static void test_off_and_missing(void) {
  lh_docs_t *d = load(0, dir);
  lh_docs_answer_t a;
  ask(&a, d, LH_M_GET, "/docs", NULL);
  LH_CHECK_INT(a.status, 404);
  LH_CHECK_STR(a.error_code, "not_found");
  lh_docs_free(d);

  d = load(1, "/nonexistent/swagger-ui-dist");
  ask(&a, d, LH_M_GET, "/docs/swagger-ui.css", NULL);
  LH_CHECK_INT(a.status, 404);
  LH_CHECK_STR(a.error_code, "docs_unavailable");
  lh_docs_free(d);

  ask(&a, NULL, LH_M_GET, "/docs", NULL);
  LH_CHECK_INT(a.status, 404);
}

int main(void) {
  fixtures();
  LH_RUN(test_assets_by_exact_name);
  LH_RUN(test_the_page_names_assets_with_their_hash);
  LH_RUN(test_if_none_match);
  LH_RUN(test_off_and_missing);
  cleanup();
  return lh_test_done();
}
