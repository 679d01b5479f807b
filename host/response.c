/* response.c: HTTP/1.1 response serialisation and the host's error envelope (see response.h). */
#include "response.h"

#include <string.h>
#include <time.h>

#include "lh.h"
#include "timefmt.h"

const char *lh_status_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

/* The Date header changes once a second: format it once per second per thread. */
static __thread time_t date_cached_at;
static __thread char date_cached[40];

static const char *http_date(void) {
  time_t now = time(NULL);
  if (now != date_cached_at) {
    lh_time_format((int64_t)now * 1000, LH_TIME_HTTP, date_cached, sizeof(date_cached));
    date_cached_at = now;
  }
  return date_cached;
}

size_t lh_response_head(lh_buf_t *out, const lh_resp_t *r) {
  lh_buf_reserve(out, 256 + r->extra_len);
  lh_buf_puts(out, "HTTP/1.1 ");
  lh_buf_put_u64(out, (unsigned long long)r->status);
  lh_buf_putc(out, ' ');
  lh_buf_puts(out, lh_status_reason(r->status));
  lh_buf_puts(out, "\r\nServer: luahost\r\nDate: ");
  lh_buf_puts(out, http_date());
  lh_buf_puts(out, "\r\nContent-Type: ");
  lh_buf_puts(out, r->content_type ? r->content_type : "application/json");
  /* 204 and 304 have no body, and a 204 must not even announce one (RFC 9110 §8.6). */
  int bodiless = r->status == 204 || r->status == 304;
  if (!bodiless) {
    lh_buf_puts(out, "\r\nContent-Length: ");
    lh_buf_put_u64(out, (unsigned long long)r->body_len);
  }
  lh_buf_puts(out, "\r\nX-Content-Type-Options: nosniff\r\n");
  if (r->request_id) {
    lh_buf_puts(out, "X-Request-Id: ");
    lh_buf_puts(out, r->request_id);
    lh_buf_puts(out, "\r\n");
  }
  if (!r->keep_alive)
    lh_buf_puts(out, "Connection: close\r\n");
  if (r->extra_len)
    lh_buf_append(out, r->extra, r->extra_len);
  lh_buf_puts(out, "\r\n");
  return r->head || bodiless ? 0 : r->body_len;
}

void lh_response_serialize(lh_buf_t *out, const lh_resp_t *r) {
  size_t n = lh_response_head(out, r);
  if (n)
    lh_buf_append(out, r->body, n);
}

void lh_envelope(lh_buf_t *body, int ok, const char *message, const char *data_json,
                 size_t data_len) {
  lh_buf_puts(body, "{\"message\":");
  lh_buf_put_json_string(body, message, strlen(message));
  lh_buf_puts(body, ok ? ",\"response_status\":true,\"response_data\":"
                       : ",\"response_status\":false,\"response_data\":");
  if (data_json)
    lh_buf_append(body, data_json, data_len);
  else
    lh_buf_puts(body, "null");
  lh_buf_putc(body, '}');
}

void lh_envelope_error(lh_buf_t *body, const char *message, const char *code) {
  lh_buf_t data;
  lh_buf_init(&data);
  lh_buf_puts(&data, "{\"code\":");
  lh_buf_put_json_string(&data, code, strlen(code));
  lh_buf_putc(&data, '}');
  if (data.failed)
    body->failed = 1;
  else
    lh_envelope(body, 0, message, data.data, data.len);
  lh_buf_free(&data);
}

int lh_header_is_valid(const char *name, size_t nlen, const char *value, size_t vlen) {
  if (nlen == 0)
    return 0;
  for (size_t i = 0; i < nlen; i++)
    if (!lh_is_token_char((unsigned char)name[i]))
      return 0;
  for (size_t i = 0; i < vlen; i++) {
    unsigned char c = (unsigned char)value[i];
    if (c == '\r' || c == '\n' || c == '\0')
      return 0;
  }
  return 1;
}

static const lh_error_kind_t kinds[] = {
    /* runtime outcomes of bindings that mean "try again" */
    {"overloaded", 503, "overloaded", "The server is busy, retry later", 1},
    {"unavailable", 503, "service_unavailable",
     "The service is temporarily unavailable, retry later", 5},
    {"timeout", 503, "timeout", "The request timed out, retry later", 5},
    /* the host's own conditions */
    {"out_of_memory", 503, "overloaded", "The server is out of memory", 1},
    {"too_many_connections", 503, "too_many_connections", "Too many connections", 1},
    {"draining", 503, "draining", "Shutting down", 1},
    {"starting", 503, "starting", "Starting: not ready yet", 1},
    {"script_budget_exceeded", 500, "script_budget_exceeded", "The script ran too long", 0},
    {"script_memory_exceeded", 500, "script_memory_exceeded", "The script used too much memory", 0},
    {"internal_error", 500, "internal_error", "Internal server error", 0},
    {NULL, 0, NULL, NULL, 0},
};

const lh_error_kind_t *lh_error_kind(const char *name) {
  if (!name)
    return NULL;
  for (const lh_error_kind_t *k = kinds; k->name; k++)
    if (strcmp(k->name, name) == 0)
      return k;
  return NULL;
}

const lh_error_kind_t *lh_error_kinds(void) {
  return kinds;
}

void lh_error_kind_write(const lh_error_kind_t *k, lh_buf_t *body, lh_buf_t *headers) {
  lh_envelope_error(body, k->message, k->code);
  if (k->retry_after > 0)
    lh_buf_printf(headers, "Retry-After: %d\r\n", k->retry_after);
}
