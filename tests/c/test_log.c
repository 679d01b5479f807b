/* test_log.c: unit tests for host/log.c and host/timefmt.c: every log line is one valid JSON
 * object whatever the message holds (invalid UTF-8, quotes, control characters), and the one time
 * formatter's two styles. */
#include "lh.h"
#include "lh_test.h"
#include "log.h"
#include "timefmt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs lh_log with msg as its argument and returns the line written to stderr (static). */
static const char *log_line(const char *msg) {
  static char line[8192];
  char path[] = "/tmp/lh_test_log_XXXXXX";
  int fd = mkstemp(path);
  LH_CHECK(fd >= 0);
  int saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  lh_log(LH_LOG_WARN, "got %s", msg);
  dup2(saved, STDERR_FILENO);
  close(saved);
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, line, sizeof line - 1);
  close(fd);
  unlink(path);
  line[n > 0 ? n : 0] = '\0';
  return line;
}

static void test_line_is_json_whatever_the_message(void) {
  static const char *const msgs[] = {
      "plain", "quote \" backslash \\ newline \n tab \t bell \a", "invalid \xff\xfe UTF-8 \xc3",
      "overlong \xc0\xaf and surrogate \xed\xa0\x80", "caf\xc3\xa9 \xe2\x80\xa8 separator"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(msgs); i++) {
    const char *line = log_line(msgs[i]);
    size_t len = strlen(line);
    LH_CHECK(len > 0 && line[len - 1] == '\n');
    LH_CHECK(memchr(line, '\n', len) == line + len - 1); /* one line */
    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    LH_CHECK(obj != NULL);
    if (!obj) {
      fprintf(stderr, "  not JSON: %s (%s)\n", line, jerr.text);
      continue;
    }
    LH_CHECK_STR(json_string_value(json_object_get(obj, "level")), "warn");
    const char *m = json_string_value(json_object_get(obj, "msg"));
    LH_CHECK(m != NULL && strncmp(m, "got ", 4) == 0);
    json_decref(obj);
  }
  /* Invalid bytes become U+FFFD, valid text is kept. */
  LH_CHECK(strstr(log_line("a\xff"
                           "b"),
                  "a\xef\xbf\xbd"
                  "b") != NULL);
  LH_CHECK(strstr(log_line("caf\xc3\xa9"), "caf\xc3\xa9") != NULL);
}

static void test_time_format(void) {
  char buf[40];
  LH_CHECK_INT(lh_time_format(0, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
  LH_CHECK_INT(lh_time_format(-1, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
  LH_CHECK_INT(lh_time_format(951782400123LL, LH_TIME_ISO8601, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "2000-02-29T00:00:00.123Z");
  LH_CHECK_INT(lh_time_format(0, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
  LH_CHECK_INT(lh_time_format(1764547200999LL, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Mon, 01 Dec 2025 00:00:00 GMT");
  LH_CHECK_INT(lh_time_format(-86400000LL, LH_TIME_HTTP, buf, sizeof buf), 0);
  LH_CHECK_STR(buf, "Wed, 31 Dec 1969 00:00:00 GMT");
  /* Years beyond 0..9999 and short buffers are refused. */
  LH_CHECK_INT(lh_time_format(253402300800000LL, LH_TIME_ISO8601, buf, sizeof buf), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(-62167219200001LL, LH_TIME_ISO8601, buf, sizeof buf), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(0, LH_TIME_ISO8601, buf, 24), LH_EINVAL);
  LH_CHECK_INT(lh_time_format(0, LH_TIME_HTTP, buf, 29), LH_EINVAL);
  /* The log's timestamp is the ISO style of now. */
  char ts[32];
  lh_log_timestamp(ts, sizeof ts);
  LH_CHECK(strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
}

int main(void) {
  LH_RUN(test_line_is_json_whatever_the_message);
  LH_RUN(test_time_format);
  return lh_test_done();
}
