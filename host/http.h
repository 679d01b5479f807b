/* http.h: llhttp glue. Turns bytes into complete requests under strict framing and size limits,
 * one message at a time (the parser pauses after each message so pipelined requests are answered in
 * order). It owns the request's storage (URL, headers, body) until lh_http_next. No sockets here:
 * the connection module feeds bytes and acts on the result, so every rule is unit-testable. */
#ifndef LH_HTTP_H
#define LH_HTTP_H

#include <stddef.h>
#include <llhttp.h>
#include "buf.h"

typedef struct {
  size_t max_url_bytes;     /* request target; over it: 414 */
  size_t max_header_bytes;  /* request line + header block; over it: 431 */
  size_t max_header_fields; /* over it: 431 */
  size_t max_body_bytes;    /* declared or chunked total; over it: 413 */
} lh_http_limits_t;

typedef struct {
  const char *name; /* lower-cased */
  size_t name_len;
  const char *value; /* leading and trailing whitespace trimmed */
  size_t value_len;
} lh_header_t;

typedef struct {
  const char *method; /* "GET", ... (static string, llhttp's name for the method) */
  int method_id;      /* an lh_method_t, or LH_ENOTFOUND for a method the router does not know */
  int http_major, http_minor;
  const char *url; /* NUL-terminated copy of the request target */
  size_t url_len;
  const char *path; /* points into url; not NUL-terminated */
  size_t path_len;
  const char *query; /* after '?', or NULL */
  size_t query_len;
  lh_header_t *headers;
  size_t nheaders;
  const char *body; /* NULL when there is no body */
  size_t body_len;
  int keep_alive; /* the client allows another request on this connection */
} lh_request_t;

typedef enum {
  LH_HTTP_NEED_MORE = 0, /* all bytes consumed, no complete request yet */
  LH_HTTP_REQUEST,       /* h->req is complete; call lh_http_next before feeding more */
  LH_HTTP_ERROR,         /* answer h->err_status with h->err_code, then close */
  LH_HTTP_CLOSE          /* close without an answer (HTTP/2 preface) */
} lh_http_result_t;

typedef enum { LH_PHASE_IDLE = 0, LH_PHASE_HEADERS, LH_PHASE_BODY, LH_PHASE_DONE } lh_http_phase_t;

typedef struct lh_http_s {
  llhttp_t parser;
  const lh_http_limits_t *limits;
  lh_http_phase_t phase;
  lh_request_t req;
  /* Storage: url, then header name/value bytes; offsets are fixed up into pointers once the header
   * block is complete because the buffer may move while it grows. */
  lh_buf_t store;
  lh_buf_t body;
  size_t url_end;
  size_t header_bytes;
  size_t nfields, fields_cap;
  struct lh_http_field_s *fields; /* offsets into store, grown on demand and kept */
  lh_header_t *headers;           /* same capacity as fields */
  int in_value;
  const char *exec_start; /* start of the bytes being fed, to tell folds from read boundaries */
  char last_byte;         /* last byte of the previous feed */
  int send_continue;      /* the client sent Expect: 100-continue and waits for it */
  /* error */
  int err_status;
  const char *err_code;
  char err_msg[160];
} lh_http_t;

void lh_http_init(lh_http_t *h, const lh_http_limits_t *limits);
void lh_http_free(lh_http_t *h);
/* Feeds bytes; *consumed says how many were used (less than len only for LH_HTTP_REQUEST, when the
 * rest belongs to the next pipelined request). */
lh_http_result_t lh_http_feed(lh_http_t *h, const char *data, size_t len, size_t *consumed);
/* Forgets the current request and prepares for the next message on the same connection. */
void lh_http_next(lh_http_t *h);
/* Case-insensitive lookup of a header in a complete request; NULL if absent. */
const lh_header_t *lh_request_header(const lh_request_t *req, const char *lname);

#endif
