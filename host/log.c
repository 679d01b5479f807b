/* log.c: leveled logging as JSON lines, to stderr or to files. Each line is built in one buffer
 * and written with a single write(2), so lines from different threads never interleave (pipes keep
 * a single write below PIPE_BUF whole; files are opened O_APPEND; messages are truncated to
 * LH_LOG_MSG_MAX bytes). The level is a process-wide atomic set once at start-up and read on every
 * call.
 *
 * Two sinks: access lines and every other line. A sink writes to stderr, or to a file whose
 * descriptor never changes once opened: reopening (SIGUSR1, after logrotate renamed the file)
 * opens the path again and dup2()s the new file onto that descriptor, which replaces it
 * atomically, so a writer on another thread is never handed a closed descriptor. */
#include "log.h"
#include "buf.h"
#include "lh.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

typedef struct {
  _Atomic int fd;  /* STDERR_FILENO, or the file's own descriptor */
  char path[1024]; /* "" for stderr; written under lh_log_files_lock */
} lh_log_sink_t;

enum { LH_SINK_ACCESS = 0, LH_SINK_ERROR = 1 };

static lh_log_sink_t lh_sinks[2] = {{STDERR_FILENO, ""}, {STDERR_FILENO, ""}};
/* Serialises opening and reopening; writers never take it. */
static pthread_mutex_t lh_log_files_lock = PTHREAD_MUTEX_INITIALIZER;

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

static int lh_sink_fd(int sink) {
  return atomic_load_explicit(&lh_sinks[sink].fd, memory_order_acquire);
}

/* Writes the whole buffer, retrying on EINTR and short writes. Errors are ignored: there is
 * nowhere left to report a failure to write the log. */
static void lh_log_write(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Opens path for appending, on a descriptor above stderr (so it is never mistaken for it). */
static int lh_log_open_path(const char *path, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0 && fd <= STDERR_FILENO) {
    int high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
    close(fd);
    fd = high;
  }
  if (fd < 0)
    snprintf(err, errlen, "cannot open log file %s: %s", path, strerror(errno));
  return fd;
}

/* Points a sink at path ("" for stderr). Caller holds lh_log_files_lock. */
static int lh_sink_set(int sink, const char *path, char *err, size_t errlen) {
  lh_log_sink_t *s = &lh_sinks[sink];
  int old = lh_sink_fd(sink);
  if (!path[0]) {
    atomic_store_explicit(&s->fd, STDERR_FILENO, memory_order_release);
    if (old != STDERR_FILENO)
      close(old);
    s->path[0] = '\0';
    return 0;
  }
  if (strlen(path) >= sizeof(s->path)) {
    snprintf(err, errlen, "log file path too long: %s", path);
    return LH_EIO;
  }
  int fd = lh_log_open_path(path, err, errlen);
  if (fd < 0)
    return LH_EIO;
  if (old == STDERR_FILENO) {
    atomic_store_explicit(&s->fd, fd, memory_order_release);
  } else {
    /* Already a file: the new one takes over the descriptor writers hold. */
    int rc = dup3(fd, old, O_CLOEXEC); /* dup2 would clear close-on-exec */
    close(fd);
    if (rc < 0) {
      snprintf(err, errlen, "cannot switch to log file %s: %s", path, strerror(errno));
      return LH_EIO;
    }
  }
  snprintf(s->path, sizeof(s->path), "%s", path);
  return 0;
}

int lh_log_open_files(const char *access_path, const char *error_path, char *err, size_t errlen) {
  pthread_mutex_lock(&lh_log_files_lock);
  int rc = lh_sink_set(LH_SINK_ACCESS, access_path ? access_path : "", err, errlen);
  if (rc == 0)
    rc = lh_sink_set(LH_SINK_ERROR, error_path ? error_path : "", err, errlen);
  pthread_mutex_unlock(&lh_log_files_lock);
  return rc;
}

int lh_log_reopen(char *err, size_t errlen) {
  int rc = 0;
  pthread_mutex_lock(&lh_log_files_lock);
  for (int i = 0; i < (int)LH_ARRAY_SIZE(lh_sinks); i++) {
    int fd = lh_sink_fd(i);
    if (fd == STDERR_FILENO)
      continue;
    char why[1200];
    int nfd = lh_log_open_path(lh_sinks[i].path, why, sizeof(why));
    int ok = nfd >= 0;
    if (ok && dup3(nfd, fd, O_CLOEXEC) < 0) {
      snprintf(why, sizeof(why), "cannot reopen log file %s: %s", lh_sinks[i].path,
               strerror(errno));
      ok = 0;
    }
    if (nfd >= 0)
      close(nfd);
    if (!ok && rc == 0) {
      snprintf(err, errlen, "%s", why);
      rc = LH_EIO;
    }
  }
  pthread_mutex_unlock(&lh_log_files_lock);
  return rc;
}

void lh_log_timestamp(char *out, size_t outlen) {
  if (lh_time_format(lh_time_now_ms(), LH_TIME_ISO8601, out, outlen) != 0 && outlen)
    out[0] = '\0';
}

/* An absolute source path (__FILE__ of the build) is named by its last two components
 * ("host/conn.c"); a relative one (a script's chunk name) as it is. */
static const char *lh_short_file(const char *file) {
  const char *last = strrchr(file, '/');
  if (file[0] != '/' || !last)
    return file;
  const char *p = last;
  while (p > file && p[-1] != '/')
    p--;
  return p;
}

static void lh_log_line(lh_log_level_t level, const char *file, int line, const char *fmt,
                        va_list ap) {
  char msg[LH_LOG_MSG_MAX];
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  if (n < 0)
    n = 0;
  size_t msglen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;

  char ts[32];
  lh_log_timestamp(ts, sizeof ts);
  /* The one JSON string writer escapes the message and the file name: control characters are
   * escaped and invalid UTF-8 becomes U+FFFD, so no message can make the line invalid JSON. */
  lh_buf_t b;
  lh_buf_init(&b);
  lh_buf_puts(&b, "{\"ts\":\"");
  lh_buf_puts(&b, ts);
  lh_buf_puts(&b, "\",\"level\":\"");
  lh_buf_puts(&b, lh_level_names[level]);
  lh_buf_puts(&b, "\",\"msg\":");
  lh_buf_put_json_string(&b, msg, msglen);
  if (file) {
    const char *f = lh_short_file(file);
    lh_buf_puts(&b, ",\"file\":");
    lh_buf_put_json_string(&b, f, strlen(f));
    lh_buf_printf(&b, ",\"line\":%d", line);
  }
  lh_buf_puts(&b, "}\n");
  if (!b.failed)
    lh_log_write(lh_sink_fd(LH_SINK_ERROR), b.data, b.len);
  lh_buf_free(&b);
}

void lh_log(lh_log_level_t level, const char *fmt, ...) {
  if (!lh_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  lh_log_line(level, NULL, 0, fmt, ap);
  va_end(ap);
}

void lh_log_at(lh_log_level_t level, const char *file, int line, const char *fmt, ...) {
  if (!lh_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  lh_log_line(level, file, line, fmt, ap);
  va_end(ap);
}

/* The object and its newline go out in one writev(2) so that the line stays whole. */
static void lh_log_object(int fd, const char *json, size_t len) {
  struct iovec iov[2] = {{(void *)json, len}, {(void *)"\n", 1}};
  size_t total = len + 1;
  for (;;) {
    ssize_t w = writev(fd, iov, 2);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 || (size_t)w == total)
      return;
    /* A short write (only on a full pipe or a huge line) is finished with plain writes. */
    if ((size_t)w < len)
      lh_log_write(fd, json + w, len - (size_t)w);
    lh_log_write(fd, "\n", 1); /* the JSON was out (w >= len): only the newline is missing */
    return;
  }
}

void lh_log_json(lh_log_level_t level, const char *json, size_t len) {
  if (lh_log_enabled(level))
    lh_log_object(lh_sink_fd(LH_SINK_ERROR), json, len);
}

void lh_log_access(const char *json, size_t len) {
  lh_log_object(lh_sink_fd(LH_SINK_ACCESS), json, len);
}
