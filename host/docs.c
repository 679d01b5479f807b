/* docs.c: /openapi.json and /docs (see docs.h). */
#include "docs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "log.h"

/* The swagger-ui-dist files the index page uses, by the exact names a request may ask for. */
static const struct {
  const char *name;
  const char *type;
} lh_doc_files[] = {
    {"swagger-ui.css", "text/css; charset=utf-8"},
    {"swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
    {"swagger-ui-standalone-preset.js", "text/javascript; charset=utf-8"},
    {"favicon-32x32.png", "image/png"},
};
#define LH_DOC_NFILES (sizeof(lh_doc_files) / sizeof(lh_doc_files[0]))
enum { LH_DOC_CSS, LH_DOC_BUNDLE, LH_DOC_PRESET, LH_DOC_FAVICON };

/* Largest asset read (swagger-ui-bundle.js is about 1.5 MB). */
#define LH_DOC_MAX_FILE (32u << 20)

typedef struct {
  char *data;
  size_t len;
  char etag[20]; /* "\"" 16 hex digits "\"" */
} lh_doc_blob_t;

struct lh_docs_s {
  int enabled;   /* cfg->docs */
  int available; /* every asset was read */
  lh_doc_blob_t files[LH_DOC_NFILES];
  lh_doc_blob_t index;
};

/* FNV-1a, 64 bits: a validator for bytes that never change while the process runs. */
static void etag_of(lh_doc_blob_t *b) {
  unsigned long long h = 14695981039346656037ULL;
  for (size_t i = 0; i < b->len; i++) {
    h ^= (unsigned char)b->data[i];
    h *= 1099511628211ULL;
  }
  snprintf(b->etag, sizeof(b->etag), "\"%016llx\"", h);
}

static int read_file(const char *dir, const char *name, lh_doc_blob_t *b, char *why,
                     size_t whylen) {
  char path[1200];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, whylen, "%s: %s", path, strerror(errno));
    return LH_EIO;
  }
  int rc = 0;
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0)
    size = ftell(f);
  if (size < 0 || (unsigned long)size > LH_DOC_MAX_FILE || fseek(f, 0, SEEK_SET) != 0) {
    snprintf(why, whylen, "%s: not a readable file of at most %u bytes", path, LH_DOC_MAX_FILE);
    rc = LH_EIO;
  } else if (!(b->data = malloc((size_t)size + 1))) {
    snprintf(why, whylen, "out of memory");
    rc = LH_ENOMEM;
  } else if (fread(b->data, 1, (size_t)size, f) != (size_t)size) {
    snprintf(why, whylen, "%s: short read", path);
    rc = LH_EIO;
  } else {
    b->len = (size_t)size;
    etag_of(b);
  }
  fclose(f);
  return rc;
}

/* The page: Swagger UI over /openapi.json, each asset named with its hash so it may be cached. */
static int write_index(lh_docs_t *d) {
  static const char fmt[] =
      "<!DOCTYPE html>\n"
      "<html lang=\"en\">\n"
      "<head>\n"
      "<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>luahost API</title>\n"
      "<link rel=\"stylesheet\" href=\"/docs/swagger-ui.css?v=%.16s\">\n"
      "<link rel=\"icon\" type=\"image/png\" href=\"/docs/favicon-32x32.png?v=%.16s\">\n"
      "</head>\n"
      "<body>\n"
      "<div id=\"swagger-ui\"></div>\n"
      "<script src=\"/docs/swagger-ui-bundle.js?v=%.16s\"></script>\n"
      "<script src=\"/docs/swagger-ui-standalone-preset.js?v=%.16s\"></script>\n"
      "<script>\n"
      "window.onload = function () {\n"
      "  window.ui = SwaggerUIBundle({\n"
      "    url: \"/openapi.json\",\n"
      "    dom_id: \"#swagger-ui\",\n"
      "    deepLinking: true,\n"
      "    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],\n"
      "    plugins: [SwaggerUIBundle.plugins.DownloadUrl],\n"
      "    layout: \"BaseLayout\"\n"
      "  });\n"
      "};\n"
      "</script>\n"
      "</body>\n"
      "</html>\n";
  const char *css = d->files[LH_DOC_CSS].etag + 1, *fav = d->files[LH_DOC_FAVICON].etag + 1;
  const char *bundle = d->files[LH_DOC_BUNDLE].etag + 1;
  const char *preset = d->files[LH_DOC_PRESET].etag + 1;
  int n = snprintf(NULL, 0, fmt, css, fav, bundle, preset);
  if (n < 0 || !(d->index.data = malloc((size_t)n + 1)))
    return LH_ENOMEM;
  snprintf(d->index.data, (size_t)n + 1, fmt, css, fav, bundle, preset);
  d->index.len = (size_t)n;
  etag_of(&d->index);
  return 0;
}

void lh_docs_free(lh_docs_t *d) {
  if (!d)
    return;
  for (size_t i = 0; i < LH_DOC_NFILES; i++)
    free(d->files[i].data);
  free(d->index.data);
  free(d);
}

int lh_docs_load(lh_docs_t **out, const lh_config_t *cfg) {
  *out = NULL;
  lh_docs_t *d = calloc(1, sizeof(*d));
  if (!d)
    return LH_ENOMEM;
  d->enabled = cfg->docs;
  if (!d->enabled) {
    *out = d;
    return 0;
  }
  char why[1400] = "";
  int rc = 0;
  for (size_t i = 0; i < LH_DOC_NFILES && rc == 0; i++)
    rc = read_file(cfg->docs_assets, lh_doc_files[i].name, &d->files[i], why, sizeof(why));
  if (rc == 0)
    rc = write_index(d);
  if (rc == LH_ENOMEM) {
    lh_docs_free(d);
    return LH_ENOMEM;
  }
  if (rc != 0) {
    lh_warn("docs_assets: cannot read the Swagger UI files (%s): /docs answers 404 "
            "docs_unavailable until they are installed (scripts/run does) and the host restarts",
            why);
    for (size_t i = 0; i < LH_DOC_NFILES; i++) {
      free(d->files[i].data);
      d->files[i].data = NULL;
      d->files[i].len = 0;
    }
  } else {
    d->available = 1;
  }
  *out = d;
  return 0;
}

/* ---- answering ---- */

/* If-None-Match: "*", or a comma-separated list of entity tags (weak ones compare equal too,
 * RFC 9110 §13.1.2). */
static int etag_matches(const char *h, size_t len, const char *etag) {
  size_t elen = strlen(etag), i = 0;
  while (i < len) {
    while (i < len && (h[i] == ' ' || h[i] == '\t' || h[i] == ','))
      i++;
    size_t start = i;
    while (i < len && h[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (h[end - 1] == ' ' || h[end - 1] == '\t'))
      end--;
    if (end - start >= 2 && h[start] == 'W' && h[start + 1] == '/')
      start += 2;
    if (end - start == 1 && h[start] == '*')
      return 1;
    if (end - start == elen && memcmp(h + start, etag, elen) == 0)
      return 1;
  }
  return 0;
}

static void not_found(lh_docs_answer_t *a, const char *code, const char *message) {
  a->status = 404;
  a->error_code = code;
  a->error_message = message;
}

/* A 200 of body, or a 304 when the client holds this version. */
static void send_blob(lh_docs_answer_t *a, const char *type, const char *body, size_t len,
                      const char *etag, const char *cache, const char *inm, size_t inm_len) {
  snprintf(a->extra, sizeof(a->extra), "ETag: %s\r\nCache-Control: %s\r\n", etag, cache);
  a->content_type = type;
  if (inm && etag_matches(inm, inm_len, etag)) {
    a->status = 304;
    return;
  }
  a->status = 200;
  a->body = body;
  a->body_len = len;
}

static const char lh_cache_forever[] = "public, max-age=31536000, immutable";
static const char lh_cache_revalidate[] = "no-cache";

void lh_docs_answer(lh_docs_answer_t *a, const lh_docs_t *docs, lh_reserved_t which, int method,
                    const char *path, size_t path_len, const char *inm, size_t inm_len,
                    const lh_vm_t *vm) {
  memset(a, 0, sizeof(*a));
  if (which == LH_RESERVED_DOCS && (!docs || !docs->enabled)) {
    not_found(a, "not_found", "Not found");
    return;
  }
  if (method != LH_M_GET && method != LH_M_HEAD) {
    a->status = 405;
    a->allow = (1u << LH_M_GET) | (1u << LH_M_HEAD);
    return;
  }
  if (which == LH_RESERVED_OPENAPI) {
    size_t len;
    const char *doc = lh_vm_openapi(vm, &len);
    char etag[24];
    snprintf(etag, sizeof(etag), "\"%s\"", lh_vm_generation(vm));
    send_blob(a, "application/json", doc, len, etag, lh_cache_revalidate, inm, inm_len);
    return;
  }
  if (!docs->available) {
    not_found(a, "docs_unavailable",
              "The API documentation page is not installed on this host (docs_assets)");
    return;
  }
  /* "/docs", "/docs/" and "/docs/index.html": the page; "/docs/<name>": one asset by its exact
   * name; anything else (other names, "..", encoded or not, deeper paths) is not found. */
  static const char prefix[] = "/docs/";
  const size_t plen = sizeof(prefix) - 1;
  const char *name = path_len > plen ? path + plen : "";
  size_t name_len = path_len > plen ? path_len - plen : 0;
  if (name_len == 0 || (name_len == 10 && memcmp(name, "index.html", 10) == 0)) {
    send_blob(a, "text/html; charset=utf-8", docs->index.data, docs->index.len, docs->index.etag,
              lh_cache_revalidate, inm, inm_len);
    return;
  }
  for (size_t i = 0; i < LH_DOC_NFILES; i++) {
    if (strlen(lh_doc_files[i].name) == name_len &&
        memcmp(lh_doc_files[i].name, name, name_len) == 0) {
      const lh_doc_blob_t *b = &docs->files[i];
      send_blob(a, lh_doc_files[i].type, b->data, b->len, b->etag, lh_cache_forever, inm, inm_len);
      return;
    }
  }
  not_found(a, "not_found", "Not found");
}
