/* test_policy_tests.c: a VM runs its generation's policy tests (vm_tests.c over
 * host/lua/policy_tests.lua) without sockets: requests routed by the VM's own router, a policy that
 * waits on a timer resumed by the loop, a failing test reported by name with what it got, and a
 * policy that never returns stopped by the time budget and named. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lh.h"
#include "lh_test.h"
#include "vm.h"

static char dir[] = "/tmp/lh_test_policy_tests.XXXXXX";
static uv_loop_t loop;
static lh_cq_t *cq;
static lh_config_t cfg;

static void write_file(const char *rel, const char *src) {
  lh_test_write_file(dir, rel, src);
}

typedef struct {
  int done, ok;
  char text[4096];
} lh_result_t;

static void on_done(void *ud, int ok, const char *text) {
  lh_result_t *r = ud;
  r->done++;
  r->ok = ok;
  snprintf(r->text, sizeof(r->text), "%s", text);
}

/* Writes tests.lua, builds a VM over the tree and runs its policy tests to the end. */
static lh_result_t run_tests(const char *tests) {
  lh_result_t r = {0, 0, ""};
  write_file("tests.lua", tests);
  lh_vm_t *vm = NULL;
  char err[1024] = "";
  int rc = lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "  vm: %s\n", err);
  LH_CHECK_INT(rc, 0);
  if (!vm)
    return r;
  lh_vm_run_policy_tests(vm, on_done, &r);
  while (!r.done && uv_run(&loop, UV_RUN_ONCE))
    ;
  LH_CHECK_INT(r.done, 1);
  LH_CHECK_INT(lh_vm_busy(vm), 0);
  lh_vm_free(vm);
  return r;
}

static void test_requests_are_routed_and_policies_may_wait(void) {
  lh_result_t r = run_tests("return { tests = {\n"
                            "  { name = 'own', policy = 'owner', user = { id = 'a b' },\n"
                            "    request = { method = 'GET', path = '/items/a%20b' },\n"
                            "    expect = 'allow' },\n"
                            "  { name = 'slow', policy = 'slow', user = { id = 'x' },\n"
                            "    request = { method = 'GET', path = '/slow' }, expect = 'deny' },\n"
                            "} }\n");
  LH_CHECK(r.ok);
  LH_CHECK(strcmp(r.text, "3 routes, 3 policies, 2 policy tests passed") == 0);
  if (!r.ok)
    fprintf(stderr, "  %s\n", r.text);
}

static void test_a_failing_test_is_named_with_what_it_got(void) {
  lh_result_t r = run_tests("return { tests = {\n"
                            "  { name = 'stranger', policy = 'owner', user = { id = 'x' },\n"
                            "    request = { method = 'GET', path = '/items/y' },\n"
                            "    expect = 'allow' },\n"
                            "} }\n");
  LH_CHECK(!r.ok);
  LH_CHECK(strstr(r.text, "/tests.lua:2: policy test 'stranger' (owner, GET /items/y): expected "
                          "allow, got deny (403 forbidden)\n1 of 1 policy tests failed") != NULL);
}

static void test_a_policy_that_never_returns_is_stopped_and_named(void) {
  lh_result_t r = run_tests("return { tests = {\n"
                            "  { name = 'fine', policy = 'owner', user = { id = 'y' },\n"
                            "    request = { method = 'GET', path = '/items/y' },\n"
                            "    expect = 'allow' },\n"
                            "  { name = 'spins', policy = 'spin', user = { id = 'x' },\n"
                            "    request = { method = 'GET', path = '/spin' }, expect = 'deny' },\n"
                            "} }\n");
  LH_CHECK(!r.ok);
  char want[160];
  snprintf(want, sizeof(want),
           "/tests.lua:5: policy test 'spins' (spin, GET /spin): the script budget of %u ms was "
           "exceeded",
           50 * lh_test_time_scale());
  LH_CHECK(strstr(r.text, want) != NULL);
}

int main(void) {
  if (!mkdtemp(dir))
    return 1;
  char sub[256];
  snprintf(sub, sizeof(sub), "%s/routes", dir);
  mkdir(sub, 0700);
  write_file("app.lua",
             "local core = require 'luahost'\n"
             "return {\n"
             "  authenticate = function() return nil, 'nobody' end,\n"
             "  policies = {\n"
             "    owner = { authenticated = true,\n"
             "              allow = function(user, req) return user.id == req.params.id end },\n"
             "    slow = { authenticated = true,\n"
             "             allow = function() core.sleep(5); return nil, 'too_slow' end },\n"
             "    spin = { authenticated = true, allow = function() while true do end end },\n"
             "  },\n"
             "}\n");
  write_file("routes/r.lua",
             "local function h() return 200, {} end\n"
             "return { routes = {\n"
             "  { method = 'GET', path = '/items/{id}', policy = 'owner', handler = h },\n"
             "  { method = 'GET', path = '/slow', policy = 'slow', handler = h },\n"
             "  { method = 'GET', path = '/spin', policy = 'spin', handler = h },\n"
             "} }\n");
  lh_config_defaults(&cfg);
  snprintf(cfg.scripts, sizeof(cfg.scripts), "%s", dir);
  cfg.script_budget_ms = 50 * (int)lh_test_time_scale();
  uv_loop_init(&loop);
  lh_cq_create(&cq, &loop);

  LH_RUN(test_requests_are_routed_and_policies_may_wait);
  LH_RUN(test_a_failing_test_is_named_with_what_it_got);
  LH_RUN(test_a_policy_that_never_returns_is_stopped_and_named);

  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    return 1;
  return lh_test_done();
}
