/* client.c: the client's address and CORS origin (see client.h). */
#include "client.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "response.h"

static int is_trusted_proxy(const lh_config_t *cfg, const char *addr, size_t len) {
  for (int i = 0; i < cfg->n_trusted_proxies; i++)
    if (strlen(cfg->trusted_proxies[i]) == len && memcmp(cfg->trusted_proxies[i], addr, len) == 0)
      return 1;
  return 0;
}

static int valid_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

void lh_client_address(const lh_config_t *cfg, const char *peer, const lh_request_t *req, char *out,
                       size_t outlen) {
  snprintf(out, outlen, "%s", peer);
  if (cfg->n_trusted_proxies == 0 || !is_trusted_proxy(cfg, peer, strlen(peer)))
    return;
  const lh_header_t *xff = lh_request_header(req, "x-forwarded-for");
  if (!xff)
    return;
  size_t end = xff->value_len;
  while (end > 0) {
    size_t start = end;
    while (start > 0 && xff->value[start - 1] != ',')
      start--;
    size_t a = start, b = end;
    while (a < b && (xff->value[a] == ' ' || xff->value[a] == '\t'))
      a++;
    while (b > a && (xff->value[b - 1] == ' ' || xff->value[b - 1] == '\t'))
      b--;
    char addr[64];
    if (b - a == 0 || b - a >= sizeof(addr))
      return; /* malformed: keep the proxy's address rather than guess */
    memcpy(addr, xff->value + a, b - a);
    addr[b - a] = '\0';
    if (!valid_ip(addr))
      return;
    snprintf(out, outlen, "%s", addr);
    if (!is_trusted_proxy(cfg, addr, b - a))
      return;
    end = start > 0 ? start - 1 : 0;
  }
}

void lh_client_cors_origin(const lh_config_t *cfg, const lh_request_t *req, char *out,
                           size_t outlen) {
  out[0] = '\0';
  if (cfg->n_cors_origins == 0)
    return;
  const lh_header_t *o = lh_request_header(req, "origin");
  if (!o || o->value_len == 0 || o->value_len >= outlen ||
      !lh_header_is_valid("Origin", 6, o->value, o->value_len))
    return;
  for (int i = 0; i < cfg->n_cors_origins; i++) {
    const char *allowed = cfg->cors_origins[i];
    if (strcmp(allowed, "*") == 0 ||
        (strlen(allowed) == o->value_len && memcmp(allowed, o->value, o->value_len) == 0)) {
      memcpy(out, o->value, o->value_len);
      out[o->value_len] = '\0';
      return;
    }
  }
}
