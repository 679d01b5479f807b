/* log.c: leveled logging to stderr as JSON lines. Each line is built in a stack buffer and
 * written with a single write(2), so lines from different threads never interleave (pipes and
 * terminals keep a single write below PIPE_BUF whole; longer lines are truncated to fit). The
 * level is a process-wide atomic set once at start-up and read on every call. */
#include "log.h"
#include "lh.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Lines longer than this are truncated: a log line that is too big to read is a bug elsewhere. */
#define LH_LOG_LINE_MAX 4096
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

/* Formats the current UTC time as 2026-11-25T13:00:00.123Z into out. The text is 24 bytes, but
 * callers pass a larger buffer so that -Wformat-truncation sees room for any int value. */
void lh_log_timestamp(char *out, size_t outlen) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/* Appends s (n bytes) to out as the inside of a JSON string. Control characters become \uXXXX
 * or their short escapes; bytes >= 0x80 pass through unchanged (messages are UTF-8 text). Stops
 * before an escape that would not fit, so the result is always valid JSON. Returns the new
 * length of out. */
static size_t lh_log_escape(char *out, size_t pos, size_t cap, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[6];
    size_t k = 0;
    if (c == '"' || c == '\\') {
      esc[k++] = '\\';
      esc[k++] = (char)c;
    } else if (c == '\n') {
      esc[k++] = '\\';
      esc[k++] = 'n';
    } else if (c == '\r') {
      esc[k++] = '\\';
      esc[k++] = 'r';
    } else if (c == '\t') {
      esc[k++] = '\\';
      esc[k++] = 't';
    } else if (c < 0x20 || c == 0x7f) {
      esc[k++] = '\\';
      esc[k++] = 'u';
      esc[k++] = '0';
      esc[k++] = '0';
      esc[k++] = hex[c >> 4];
      esc[k++] = hex[c & 15];
    } else {
      esc[k++] = (char)c;
    }
    if (pos + k > cap)
      break;
    memcpy(out + pos, esc, k);
    pos += k;
  }
  return pos;
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

  char ts[96];
  lh_log_timestamp(ts, sizeof ts);
  char line[LH_LOG_LINE_MAX];
  int head = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                      lh_level_names[level]);
  /* Room is kept for the closing quote, brace and newline. */
  size_t pos = lh_log_escape(line, (size_t)head, sizeof line - 3, msg, msglen);
  line[pos++] = '"';
  line[pos++] = '}';
  line[pos++] = '\n';
  lh_log_write(line, pos);
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
