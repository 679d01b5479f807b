/* cli_reload.c: `luahost reload` (see cli_reload.h). A command-line process of its own: plain
 * blocking sockets with a timeout, no loop. */
#include "cli_reload.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"

/* A reload runs the policy tests and the on_start hooks (which may wait for the database). */
#define LH_CLI_TIMEOUT_S 120

static int connect_admin(const char *listen, char *err, size_t errlen) {
  char host[256];
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(host)) {
    snprintf(err, errlen, "admin_listen '%s' is not host:port", listen);
    return -1;
  }
  const char *h = listen;
  size_t hl = (size_t)(colon - listen);
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  memcpy(host, h, hl);
  host[hl] = '\0';
  int port = atoi(colon + 1);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    len = sizeof(*a);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
      len = 0;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    len = sizeof(*a);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
      len = 0;
  }
  if (len == 0) {
    snprintf(err, errlen, "admin_listen '%s': not an IP address", listen);
    return -1;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -1;
  }
  struct timeval tv = {LH_CLI_TIMEOUT_S, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    snprintf(err, errlen, "cannot reach the admin listener on %s: %s (is luahost running?)", listen,
             strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int lh_cli_reload(const lh_config_t *cfg) {
  char err[512];
  if (strcmp(cfg->admin_listen, "off") == 0) {
    fprintf(stderr, "luahost reload: the admin listener is off (admin_listen); send SIGHUP to the "
                    "host instead\n");
    return 1;
  }
  int fd = connect_admin(cfg->admin_listen, err, sizeof(err));
  if (fd < 0) {
    fprintf(stderr, "luahost reload: %s\n", err);
    return 1;
  }
  lh_buf_t req, resp;
  lh_buf_init(&req);
  lh_buf_init(&resp);
  lh_buf_printf(&req, "POST /admin/reload HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n",
                cfg->admin_listen);
  if (cfg->admin_token[0])
    lh_buf_printf(&req, "Authorization: Bearer %s\r\n", cfg->admin_token);
  lh_buf_puts(&req, "Connection: close\r\n\r\n");
  int rc = req.failed || send_all(fd, req.data, req.len) != 0 ? -1 : 0;
  char chunk[4096];
  while (rc == 0) {
    ssize_t k = recv(fd, chunk, sizeof(chunk), 0);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      rc = -1;
    if (k <= 0 || resp.len > (1u << 20))
      break;
    lh_buf_append(&resp, chunk, (size_t)k);
  }
  close(fd);
  int status = 0;
  const char *body = NULL;
  if (rc == 0 && !resp.failed && resp.len > 12 && memcmp(resp.data, "HTTP/1.1 ", 9) == 0) {
    lh_buf_append(&resp, "", 1); /* NUL */
    status = atoi(resp.data + 9);
    body = strstr(resp.data, "\r\n\r\n");
  }
  int code = 1;
  if (!body) {
    fprintf(stderr, "luahost reload: no answer from the admin listener on %s%s%s\n",
            cfg->admin_listen, rc ? ": " : "", rc ? strerror(errno) : "");
  } else {
    printf("%s\n", body + 4);
    fflush(stdout);
    code = status == 200 ? 0 : 1;
    if (status == 401)
      fprintf(stderr, "luahost reload: refused: set admin_token (LUAHOST_ADMIN_TOKEN) to the "
                      "host's\n");
  }
  lh_buf_free(&req);
  lh_buf_free(&resp);
  return code;
}
