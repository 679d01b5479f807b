/* client.h: who a request comes from and whether its origin may read the answer, decided from the
 * configuration and the request alone (no connection, so every rule is unit-testable):
 * the client's address through trusted proxies (X-Forwarded-For) and the CORS origin. */
#ifndef LH_CLIENT_H
#define LH_CLIENT_H

#include <stddef.h>

#include "config.h"
#include "http.h"

/* Writes the client's address into out: the peer's, unless the peer is a trusted proxy; then the
 * right-most address in X-Forwarded-For that is not itself a trusted proxy (the left part of the
 * header is whatever the client chose to send, so only what trusted hops appended counts). A
 * malformed entry stops the walk at the last address believed. */
void lh_client_address(const lh_config_t *cfg, const char *peer, const lh_request_t *req, char *out,
                       size_t outlen);
/* Writes the request's Origin into out when cors_origins allows it ("*" allows any), else "". */
void lh_client_cors_origin(const lh_config_t *cfg, const lh_request_t *req, char *out,
                           size_t outlen);

#endif
