/* log.c: leveled logging to stderr as JSON lines. Each line is built in one buffer and written
 * with a single write(2), so lines from different threads never interleave (pipes keep a single
 * write below PIPE_BUF whole; messages are truncated to LH_LOG_MSG_MAX bytes). The
 * level is a process-wide atomic set once at start-up and read on every call. */
#include "log.h"
#include "buf.h"
#include "lh.h"
#include "timefmt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Messages longer than this are truncated: a log line that is too big to read is a bug elsewhere.
 */
#define LH_LOG_MSG_MAX 2048

static _Atomic int lh_log_level = LH_LOG_INFO;

static const char *const lh_level_names[] = {"debug", "info", "warn", "error", "off"};

void lh_log_set_level(lh_log_level_t level) {
  atomic_store_explicit(&lh_log_level, (int)level, memory_order_relaxed);
}

lh_log_level_t lh_log_get_level(void) {
  return (lh_log_level_t)atomic_load_explicit(&lh_log_level, memory_order_relaxed);
}

int lh_log_parse_level(const char *name, lh_log_level_t *out) {
  for (size_t i = 0; i < LH_ARRAY_SIZE(lh_level_names); i++) {
    if (strcasecmp(name, lh_level_names[i]) == 0) {
      *out = (lh_log_level_t)i;
      return 0;
    }
  }
  return LH_EINVAL;
}

static int lh_log_enabled(lh_log_level_t level) {
  return level >= lh_log_get_level() && level < LH_LOG_OFF;
}

/* Writes the whole buffer, retrying on EINTR and short writes. Errors are ignored: there is
 * nowhere left to report a failure to write the log. */
static void lh_log_write(const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

void lh_log_timestamp(char *out, size_t outlen) {
  if (lh_time_format(lh_time_now_ms(), LH_TIME_ISO8601, out, outlen) != 0 && outlen)
    out[0] = '\0';
}

void lh_log(lh_log_level_t level, const char *fmt, ...) {
  if (!lh_log_enabled(level))
    return;
  char msg[LH_LOG_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  size_t msglen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;

  char ts[32];
  lh_log_timestamp(ts, sizeof ts);
  /* The one JSON string writer escapes the message: control characters are escaped and invalid
   * UTF-8 becomes U+FFFD, so no message can make the line invalid JSON. */
  lh_buf_t line;
  lh_buf_init(&line);
  lh_buf_puts(&line, "{\"ts\":\"");
  lh_buf_puts(&line, ts);
  lh_buf_puts(&line, "\",\"level\":\"");
  lh_buf_puts(&line, lh_level_names[level]);
  lh_buf_puts(&line, "\",\"msg\":");
  lh_buf_put_json_string(&line, msg, msglen);
  lh_buf_puts(&line, "}\n");
  if (!line.failed)
    lh_log_write(line.data, line.len);
  lh_buf_free(&line);
}

void lh_log_json(lh_log_level_t level, const char *json, size_t len) {
  if (!lh_log_enabled(level))
    return;
  /* The object and its newline go out in one writev(2) so that the line stays whole. */
  struct iovec iov[2] = {{(void *)json, len}, {(void *)"\n", 1}};
  size_t total = len + 1;
  for (;;) {
    ssize_t w = writev(STDERR_FILENO, iov, 2);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 || (size_t)w == total)
      return;
    /* A short write (only on a full pipe or a huge line) is finished with plain writes. */
    if ((size_t)w < len) {
      lh_log_write(json + w, len - (size_t)w);
      lh_log_write("\n", 1);
    }
    return;
  }
}
