/* test_client.c: unit tests for host/client.c: the client's address through trusted proxies and
 * the CORS origin decision, on requests parsed by the real HTTP glue. */
#include "client.h"
#include "lh_test.h"

#include <string.h>

static lh_http_limits_t g_limits = {8192, 16384, 100, 65536};

/* Parses one request made of the given header lines into h. */
static const lh_request_t *parse(lh_http_t *h, const char *headers) {
  char text[2048];
  snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: t\r\n%s\r\n", headers);
  lh_http_init(h, &g_limits);
  size_t used = 0;
  LH_CHECK_INT(lh_http_feed(h, text, strlen(text), &used), LH_HTTP_REQUEST);
  return &h->req;
}

static const char *address(lh_config_t *cfg, const char *peer, const char *headers) {
  static char out[64];
  lh_http_t h;
  lh_client_address(cfg, peer, parse(&h, headers), out, sizeof out);
  lh_http_free(&h);
  return out;
}

static void add_proxy(lh_config_t *cfg, const char *ip) {
  snprintf(cfg->trusted_proxies[cfg->n_trusted_proxies++], sizeof cfg->trusted_proxies[0], "%s",
           ip);
}

static void test_address(void) {
  lh_config_t cfg;
  lh_config_defaults(&cfg);
  /* No trusted proxy: X-Forwarded-For is the client's own claim and is ignored. */
  LH_CHECK_STR(address(&cfg, "10.0.0.9", "X-Forwarded-For: 1.2.3.4\r\n"), "10.0.0.9");
  add_proxy(&cfg, "10.0.0.1");
  add_proxy(&cfg, "10.0.0.2");
  /* An untrusted peer's header is ignored. */
  LH_CHECK_STR(address(&cfg, "10.0.0.9", "X-Forwarded-For: 1.2.3.4\r\n"), "10.0.0.9");
  /* Through one trusted proxy: the address it appended. */
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 1.2.3.4\r\n"), "1.2.3.4");
  /* The right-most address that is not a trusted proxy; what the client wrote on the left is
   * not believed. */
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 6.6.6.6, 1.2.3.4 ,10.0.0.2\r\n"),
               "1.2.3.4");
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 2001:db8::1\r\n"), "2001:db8::1");
  /* Malformed entries stop the walk at the last address believed. */
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 1.2.3.4, not-an-ip\r\n"), "10.0.0.1");
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 1.2.3.4,,10.0.0.2\r\n"), "10.0.0.2");
  LH_CHECK_STR(address(&cfg, "10.0.0.1", ""), "10.0.0.1");
  /* Only trusted proxies all the way: the left-most of them. */
  LH_CHECK_STR(address(&cfg, "10.0.0.1", "X-Forwarded-For: 10.0.0.2\r\n"), "10.0.0.2");
}

static const char *origin(lh_config_t *cfg, const char *headers) {
  static char out[256];
  lh_http_t h;
  lh_client_cors_origin(cfg, parse(&h, headers), out, sizeof out);
  lh_http_free(&h);
  return out;
}

static void test_cors_origin(void) {
  lh_config_t cfg;
  lh_config_defaults(&cfg);
  LH_CHECK_STR(origin(&cfg, "Origin: https://a.example\r\n"), ""); /* CORS off */
  snprintf(cfg.cors_origins[cfg.n_cors_origins++], sizeof cfg.cors_origins[0], "https://a.example");
  LH_CHECK_STR(origin(&cfg, "Origin: https://a.example\r\n"), "https://a.example");
  LH_CHECK_STR(origin(&cfg, "Origin: https://b.example\r\n"), "");
  LH_CHECK_STR(origin(&cfg, "Origin: https://a.example.evil\r\n"), "");
  LH_CHECK_STR(origin(&cfg, ""), "");
  snprintf(cfg.cors_origins[cfg.n_cors_origins++], sizeof cfg.cors_origins[0], "*");
  LH_CHECK_STR(origin(&cfg, "Origin: https://b.example\r\n"), "https://b.example");
  /* Too long for the answer's buffer: no CORS rather than a cut origin. */
  char big[400];
  snprintf(big, sizeof big, "Origin: https://%0300d.example\r\n", 0);
  LH_CHECK_STR(origin(&cfg, big), "");
}

int main(void) {
  LH_RUN(test_address);
  LH_RUN(test_cors_origin);
  return lh_test_done();
}
