/* http.c: llhttp glue (see http.h). Every lenient flag of llhttp stays off, so conflicting or
 * malformed framing (CL+TE, duplicate Content-Length, bad Transfer-Encoding) is a parse error.
 * llhttp does not limit sizes, so the callbacks count bytes themselves and stop the parser with
 * the right status; it accepts a missing Host, so headers_complete requires it for HTTP/1.1. */
#include "http.h"

#include <ctype.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

#include "lh.h"
#include "router.h"

struct lh_http_field_s {
  size_t name_off, name_len, value_off, value_len;
};

/* Per header line the wire carries ": " and CRLF besides the name and value. */
#define LH_HEADER_LINE_OVERHEAD 4

static lh_http_t *parser_owner(llhttp_t *p) {
  return (lh_http_t *)p->data;
}

static int fail(lh_http_t *h, int status, const char *code, const char *msg) {
  if (!h->err_status) {
    h->err_status = status;
    h->err_code = code;
    snprintf(h->err_msg, sizeof(h->err_msg), "%s", msg);
  }
  return -1;
}

static int on_message_begin(llhttp_t *p) {
  lh_http_t *h = parser_owner(p);
  h->phase = LH_PHASE_HEADERS;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  lh_http_t *h = parser_owner(p);
  if (h->store.len + len > h->limits->max_url_bytes)
    return fail(h, 414, "uri_too_long", "The request target is too long");
  h->header_bytes += len;
  if (lh_buf_append(&h->store, at, len) != 0)
    return fail(h, 500, "out_of_memory", "Out of memory");
  return 0;
}

static int on_url_complete(llhttp_t *p) {
  lh_http_t *h = parser_owner(p);
  h->url_end = h->store.len;
  /* A NUL terminator after the URL keeps it usable as a C string. */
  if (lh_buf_putc(&h->store, '\0') != 0)
    return fail(h, 500, "out_of_memory", "Out of memory");
  return 0;
}

static int grow_fields(lh_http_t *h) {
  size_t cap = h->fields_cap ? h->fields_cap * 2 : 16;
  struct lh_http_field_s *f = realloc(h->fields, cap * sizeof(*f));
  if (!f)
    return LH_ENOMEM;
  h->fields = f;
  lh_header_t *hd = realloc(h->headers, cap * sizeof(*hd));
  if (!hd)
    return LH_ENOMEM;
  h->headers = hd;
  h->fields_cap = cap;
  return 0;
}

static int count_header_bytes(lh_http_t *h, size_t len) {
  h->header_bytes += len;
  if (h->header_bytes > h->limits->max_header_bytes)
    return fail(h, 431, "headers_too_large", "The request header block is too large");
  return 0;
}

/* Chunked trailers arrive through the header callbacks after the header block was fixed up into
 * pointers: storing them would move the buffers those pointers refer to. Nothing here uses
 * trailers, so they are counted against the header limit and dropped. */
static int in_trailers(const lh_http_t *h) {
  return h->phase >= LH_PHASE_BODY;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  lh_http_t *h = parser_owner(p);
  if (count_header_bytes(h, len) != 0)
    return -1;
  if (in_trailers(h))
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!lh_is_token_char((unsigned char)at[i])) /* llhttp 8.1 lets a space through */
      return fail(h, 400, "bad_request", "Malformed HTTP request: invalid header field name");
  if (h->in_value || h->nfields == 0) {
    /* A new field starts, and it must start a line: a parser that ended a header line at a bare
     * CR (llhttp before 9, CVE-2023-30589) would otherwise let a hidden field frame the body. */
    char before = at > h->exec_start ? at[-1] : h->last_byte;
    if (before != '\n')
      return fail(h, 400, "bad_request", "Malformed HTTP request: header line not ended by CRLF");
    if (h->nfields >= h->limits->max_header_fields)
      return fail(h, 431, "too_many_headers", "The request has too many header fields");
    if (h->nfields == h->fields_cap && grow_fields(h) != 0)
      return fail(h, 500, "out_of_memory", "Out of memory");
    struct lh_http_field_s *f = &h->fields[h->nfields++];
    f->name_off = h->store.len;
    f->name_len = 0;
    f->value_off = 0;
    f->value_len = 0;
    h->in_value = 0;
    h->header_bytes += LH_HEADER_LINE_OVERHEAD;
  }
  struct lh_http_field_s *f = &h->fields[h->nfields - 1];
  size_t start = h->store.len;
  if (lh_buf_append(&h->store, at, len) != 0)
    return fail(h, 500, "out_of_memory", "Out of memory");
  for (size_t i = start; i < h->store.len; i++) {
    char c = h->store.data[i];
    if (c >= 'A' && c <= 'Z')
      h->store.data[i] = (char)(c + ('a' - 'A'));
  }
  f->name_len += len;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  lh_http_t *h = parser_owner(p);
  if (count_header_bytes(h, len) != 0)
    return -1;
  if (in_trailers(h))
    return 0;
  /* A value continues in a second callback only at a read boundary; anywhere else it is an
   * obs-fold continuation line, which RFC 9112 lets a server reject, and we do: folded headers
   * are a classic request-smuggling vector. */
  if (h->in_value &&
      (at != h->exec_start || (h->last_byte == '\n' && len && (at[0] == ' ' || at[0] == '\t'))))
    return fail(h, 400, "bad_request", "Malformed HTTP request: folded header lines");
  struct lh_http_field_s *f = &h->fields[h->nfields - 1];
  if (!h->in_value) {
    h->in_value = 1;
    f->value_off = h->store.len;
    f->value_len = 0;
  }
  if (lh_buf_append(&h->store, at, len) != 0)
    return fail(h, 500, "out_of_memory", "Out of memory");
  f->value_len += len;
  return 0;
}

static void fix_up_headers(lh_http_t *h) {
  for (size_t i = 0; i < h->nfields; i++) {
    struct lh_http_field_s *f = &h->fields[i];
    const char *v = h->store.data + f->value_off;
    size_t vl = f->value_len;
    while (vl && (v[0] == ' ' || v[0] == '\t')) {
      v++;
      vl--;
    }
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
      vl--;
    h->headers[i].name = h->store.data + f->name_off;
    h->headers[i].name_len = f->name_len;
    h->headers[i].value = vl ? v : "";
    h->headers[i].value_len = vl;
  }
  h->req.headers = h->headers;
  h->req.nheaders = h->nfields;
  h->req.url = h->store.data;
  h->req.url_len = h->url_end;
  const char *q = memchr(h->req.url, '?', h->req.url_len);
  h->req.path = h->req.url;
  h->req.path_len = q ? (size_t)(q - h->req.url) : h->req.url_len;
  h->req.query = q ? q + 1 : NULL;
  h->req.query_len = q ? h->req.url_len - h->req.path_len - 1 : 0;
}

static int value_is(const lh_header_t *hd, const char *lit) {
  size_t n = strlen(lit);
  return hd && hd->value_len == n && strncasecmp(hd->value, lit, n) == 0;
}

/* llhttp's method number to the router's: the method is known once, never re-parsed. */
static int method_id(llhttp_method_t m) {
  switch (m) {
  case HTTP_GET: return LH_M_GET;
  case HTTP_HEAD: return LH_M_HEAD;
  case HTTP_POST: return LH_M_POST;
  case HTTP_PUT: return LH_M_PUT;
  case HTTP_PATCH: return LH_M_PATCH;
  case HTTP_DELETE: return LH_M_DELETE;
  case HTTP_OPTIONS: return LH_M_OPTIONS;
  default: return LH_ENOTFOUND;
  }
}

/* RFC 9112 §3.2 and RFC 3986 §3.2.2: Host is uri-host [":" port], where uri-host is a bracketed
 * IP literal or a reg-name (unreserved, pct-encoded and sub-delims characters; IPv4 is a reg-name
 * lexically). An empty value is refused too: this server never serves an empty authority. */
static int valid_host(const char *v, size_t n) {
  size_t i = 0;
  if (n == 0)
    return 0;
  if (v[0] == '[') {
    while (i < n && v[i] != ']')
      i++;
    if (i == n || i < 3)
      return 0;
    for (size_t k = 1; k < i; k++)
      if (!isxdigit((unsigned char)v[k]) && v[k] != ':' && v[k] != '.')
        return 0;
    i++;
  } else {
    for (; i < n && v[i] != ':'; i++) {
      unsigned char c = (unsigned char)v[i];
      if (!isalnum(c) && (c == 0 || !strchr("-._~!$&'()*+,;=%", c)))
        return 0;
    }
    if (i == 0)
      return 0;
  }
  if (i == n)
    return 1;
  if (v[i] != ':')
    return 0;
  for (i++; i < n; i++)
    if (!isdigit((unsigned char)v[i]))
      return 0;
  return 1;
}

static int on_headers_complete(llhttp_t *p) {
  lh_http_t *h = parser_owner(p);
  fix_up_headers(h);
  h->req.method = llhttp_method_name((llhttp_method_t)p->method);
  h->req.method_id = method_id((llhttp_method_t)p->method);
  h->req.http_major = p->http_major;
  h->req.http_minor = p->http_minor;
  if (p->method == HTTP_CONNECT)
    return fail(h, 405, "method_not_allowed", "CONNECT is not supported");
  if (p->http_major != 1)
    return fail(h, 505, "http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are supported");
  if (h->req.path_len == 0 || h->req.path[0] != '/')
    return fail(h, 400, "bad_request", "The request target must be an absolute path");
  const lh_header_t *host = NULL;
  for (size_t i = 0; i < h->req.nheaders; i++) {
    const lh_header_t *hd = &h->req.headers[i];
    if (hd->name_len == 4 && memcmp(hd->name, "host", 4) == 0) {
      if (host)
        return fail(h, 400, "bad_host", "The request carries more than one Host header");
      host = hd;
    }
  }
  if (p->http_minor >= 1 && !host)
    return fail(h, 400, "missing_host", "HTTP/1.1 requests must carry a Host header");
  if (host && !valid_host(host->value, host->value_len))
    return fail(h, 400, "bad_host", "The Host header is not a valid host[:port]");
  if (p->flags & F_CONTENT_LENGTH && p->content_length > h->limits->max_body_bytes)
    return fail(h, 413, "body_too_large", "The request body is too large");
  const lh_header_t *expect = lh_request_header(&h->req, "expect");
  if (expect) {
    if (!value_is(expect, "100-continue"))
      return fail(h, 417, "expectation_failed", "Only Expect: 100-continue is supported");
    if (p->http_minor >= 1)
      h->send_continue = 1;
  }
  h->phase = LH_PHASE_BODY;
  /* Upgrade (for example curl's h2c) is ignored: the request is served as HTTP/1.1. Clearing the
   * flag keeps llhttp from switching to the upgraded protocol after this message. */
  p->upgrade = 0;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  lh_http_t *h = parser_owner(p);
  if (h->body.len + len > h->limits->max_body_bytes)
    return fail(h, 413, "body_too_large", "The request body is too large");
  if (lh_buf_append(&h->body, at, len) != 0)
    return fail(h, 500, "out_of_memory", "Out of memory");
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  lh_http_t *h = parser_owner(p);
  h->phase = LH_PHASE_DONE;
  h->send_continue = 0;
  h->req.body = h->body.len ? h->body.data : NULL;
  h->req.body_len = h->body.len;
  h->req.keep_alive = llhttp_should_keep_alive(p);
  /* Pause so the caller answers this request before the next pipelined one is parsed. */
  return HPE_PAUSED;
}

static llhttp_settings_t lh_http_settings;
static int lh_http_settings_ready;

static void settings_init(void) {
  /* Idempotent and filled with the same values by any thread: a benign race at most. */
  if (lh_http_settings_ready)
    return;
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_message_begin = on_message_begin;
  s.on_url = on_url;
  s.on_url_complete = on_url_complete;
  s.on_header_field = on_header_field;
  s.on_header_value = on_header_value;
  s.on_headers_complete = on_headers_complete;
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  lh_http_settings = s;
  lh_http_settings_ready = 1;
}

static void reset_message(lh_http_t *h) {
  lh_buf_reset(&h->store);
  lh_buf_reset(&h->body);
  h->url_end = 0;
  h->header_bytes = 0;
  h->nfields = 0;
  h->in_value = 0;
  h->send_continue = 0;
  h->phase = LH_PHASE_IDLE;
  memset(&h->req, 0, sizeof(h->req));
}

void lh_http_init(lh_http_t *h, const lh_http_limits_t *limits) {
  memset(h, 0, sizeof(*h));
  settings_init();
  h->limits = limits;
  lh_buf_init(&h->store);
  lh_buf_init(&h->body);
  llhttp_init(&h->parser, HTTP_REQUEST, &lh_http_settings);
  h->parser.data = h;
  reset_message(h);
}

void lh_http_free(lh_http_t *h) {
  lh_buf_free(&h->store);
  lh_buf_free(&h->body);
  free(h->fields);
  free(h->headers);
  h->fields = NULL;
  h->headers = NULL;
}

void lh_http_next(lh_http_t *h) {
  reset_message(h);
  if (llhttp_get_errno(&h->parser) == HPE_PAUSED)
    llhttp_resume(&h->parser);
}

lh_http_result_t lh_http_feed(lh_http_t *h, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (h->err_status)
    return LH_HTTP_ERROR;
  h->exec_start = data;
  llhttp_errno_t err = llhttp_execute(&h->parser, data, len);
  if (len)
    h->last_byte = data[len - 1];
  if (err == HPE_OK) {
    *consumed = len;
    return LH_HTTP_NEED_MORE;
  }
  if (err == HPE_PAUSED && h->phase == LH_PHASE_DONE) {
    const char *pos = llhttp_get_error_pos(&h->parser);
    *consumed = pos ? (size_t)(pos - data) : len;
    return LH_HTTP_REQUEST;
  }
  if (err == HPE_PAUSED_H2_UPGRADE)
    return LH_HTTP_CLOSE;
  if (!h->err_status) {
    const char *reason = llhttp_get_error_reason(&h->parser);
    char msg[140];
    snprintf(msg, sizeof(msg), "Malformed HTTP request: %s",
             reason ? reason : llhttp_errno_name(err));
    fail(h, 400, "bad_request", msg);
  }
  return LH_HTTP_ERROR;
}

const lh_header_t *lh_request_header(const lh_request_t *req, const char *lname) {
  size_t n = strlen(lname);
  for (size_t i = 0; i < req->nheaders; i++) {
    const lh_header_t *hd = &req->headers[i];
    if (hd->name_len == n && memcmp(hd->name, lname, n) == 0)
      return hd;
  }
  return NULL;
}
