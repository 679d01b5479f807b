/* response.h: serialises HTTP responses and the host's own error envelopes.
 * Every response carries Content-Type, Content-Length, X-Request-Id and
 * X-Content-Type-Options: nosniff; the host's own errors are
 * {"message": ..., "response_status": false, "response_data": {"code": ...}}. */
#ifndef LH_RESPONSE_H
#define LH_RESPONSE_H

#include <stddef.h>
#include "buf.h"

typedef struct {
  int status;
  const char *content_type; /* NULL: application/json */
  const char *request_id;
  int keep_alive;
  int head;          /* HEAD: Content-Length of the body, but no body bytes */
  const char *extra; /* preformatted header lines ("Name: value\r\n"...), may be NULL */
  size_t extra_len;
  const char *body;
  size_t body_len;
} lh_resp_t;

const char *lh_status_reason(int status);
/* Appends the status line and header block (through the blank line) to out and returns how many
 * of r->body's bytes belong on the wire after it: 0 for HEAD, 204 and 304. The body is written
 * from where it lies (a separate uv_write buffer), never copied behind the head. */
size_t lh_response_head(lh_buf_t *out, const lh_resp_t *r);
/* Appends the whole response (head and body) to out. */
void lh_response_serialize(lh_buf_t *out, const lh_resp_t *r);
/* The one writer of the envelope every JSON answer uses:
 * {"message": message, "response_status": ok, "response_data": data}, where data_json is a JSON
 * text (NULL: null). */
void lh_envelope(lh_buf_t *body, int ok, const char *message, const char *data_json,
                 size_t data_len);
/* An error envelope: response_data is {"code": code}. */
void lh_envelope_error(lh_buf_t *body, const char *message, const char *code);
/* True when a header line may be sent as given: a token name and a value without CR, LF or NUL. */
int lh_header_is_valid(const char *name, size_t nlen, const char *value, size_t vlen);

#endif

/* The error kinds: the one table from an error code (a binding's runtime outcome such as
 * "unavailable", or a host condition such as "draining") to what a client sees: the status, the
 * code in response_data, the message and the Retry-After seconds (0: no header). Used by the host's
 * own answers (conn.c, the VM) and, through luahost.response.status_for, by scripts. */
typedef struct {
  const char *name;    /* what callers look up */
  int status;          /* HTTP status */
  const char *code;    /* response_data.code */
  const char *message; /* the envelope's message */
  int retry_after;     /* seconds; 0 = no Retry-After */
} lh_error_kind_t;

/* The kind called `name`, or NULL when there is none (callers then answer "internal_error"). */
const lh_error_kind_t *lh_error_kind(const char *name);
/* Every kind, ending with a zeroed entry (for the Lua binding and tests). */
const lh_error_kind_t *lh_error_kinds(void);
/* Appends the kind's envelope to body and its "Retry-After: N\r\n" line (if any) to headers. */
void lh_error_kind_write(const lh_error_kind_t *k, lh_buf_t *body, lh_buf_t *headers);
