/* docs.h: the host's API description endpoints: /openapi.json (the serving VM's document, built
 * when its generation loaded: vm.h lh_vm_openapi) and /docs (Swagger UI: an index page the host
 * writes, pointing at /openapi.json, and the swagger-ui-dist files it needs).
 *
 * The asset files are read into memory once at start from the `docs_assets` directory; a request
 * only ever picks one of them by exact name, so no part of a URL reaches the file system. Every
 * answer carries an ETag (assets and the index: a hash of their bytes; /openapi.json: the
 * generation id) and honours If-None-Match with 304. Assets are cached for a year (the index names
 * them with their hash in the query, so a new version is a new URL); the index and
 * /openapi.json are revalidated each time (no-cache). No sockets here: the connection sends what
 * lh_docs_answer describes. */
#ifndef LH_DOCS_H
#define LH_DOCS_H

#include <stddef.h>

#include "config.h"
#include "router.h"
#include "vm.h"

typedef struct lh_docs_s lh_docs_t;

/* Reads the assets from cfg->docs_assets (nothing when cfg->docs is off). Never fails for missing
 * files: it logs a warning, and /docs then answers 404 docs_unavailable. Returns LH_ENOMEM only. */
int lh_docs_load(lh_docs_t **out, const lh_config_t *cfg);
void lh_docs_free(lh_docs_t *d);

typedef struct {
  int status;
  const char *content_type; /* NULL: application/json */
  const char *body;         /* borrowed (the assets, the VM's document or static text) */
  size_t body_len;
  char extra[256];        /* header lines: ETag, Cache-Control */
  unsigned allow;         /* non-zero: answer 405 with these methods (1 << lh_method_t) */
  const char *error_code; /* non-NULL: answer this error envelope with `status` */
  const char *error_message;
} lh_docs_answer_t;

/* Fills a for the reserved path `which` (LH_RESERVED_OPENAPI or LH_RESERVED_DOCS) asked with
 * `method` (an lh_method_t or LH_ENOTFOUND) on `path` (query excluded). if_none_match: the
 * request's If-None-Match value, or NULL. vm: the VM that serves this request. */
void lh_docs_answer(lh_docs_answer_t *a, const lh_docs_t *docs, lh_reserved_t which, int method,
                    const char *path, size_t path_len, const char *if_none_match, size_t inm_len,
                    const lh_vm_t *vm);

#endif
