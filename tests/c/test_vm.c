/* test_vm.c: the VM driven without sockets (a loopback exchange in, a response out), as h2o tests
 * its mruby handler: routes, the time budget, a task suspended on a pool job and woken by it, a
 * sleeping task cancelled at shutdown, and the loader refusing a hook defined twice. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lh.h"
#include "lh_test.h"
#include "register.h"
#include "scheduler.h"
#include "vm.h"
#include "vm_internal.h"

static char dir[] = "/tmp/lh_test_vm.XXXXXX";

static void write_file(const char *rel, const char *src) {
  lh_test_write_file(dir, rel, src);
}

/* ---- a test module whose function waits on a pool job ---- */

typedef struct {
  lh_ljob_t lj;
  int worked;
} lh_echo_job_t;

static void echo_work(lh_job_t *job) {
  LH_CONTAINER_OF(job, lh_echo_job_t, lj.job)->worked = 42;
}

static int echo_push(lh_ljob_t *lj, lua_State *co) {
  lua_pushinteger(co, LH_CONTAINER_OF(lj, lh_echo_job_t, lj)->worked);
  return 1;
}

static void echo_free(lh_ljob_t *lj) {
  free(LH_CONTAINER_OF(lj, lh_echo_job_t, lj));
}

static int l_echo(lua_State *L) {
  lh_echo_job_t *j = calloc(1, sizeof(*j));
  j->lj.job.work = echo_work;
  j->lj.push = echo_push;
  j->lj.free = echo_free;
  return lh_sched_await(L, "vmtest", &j->lj);
}

static int vmtest_open(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_echo);
  lua_setfield(L, -2, "job");
  return 1;
}

static const lh_module_t vmtest_module = {"luahost.vmtest",  vmtest_open, NULL, NULL,
                                          LH_MODULE_SCRIPTS, NULL};

/* ---- the loopback exchange ---- */

typedef struct {
  lh_exchange_t ex;
  lh_request_t req;
  int done;
} lh_loopback_t;

static lh_vm_t *g_done_vm; /* when set, on_done notes its give_back count */
static unsigned g_give_backs_at_done;

static void on_done(lh_exchange_t *ex) {
  LH_CONTAINER_OF(ex, lh_loopback_t, ex)->done++;
  if (g_done_vm)
    g_give_backs_at_done = g_done_vm->give_backs;
}

static uv_loop_t loop;
static lh_cq_t *cq;
static lh_config_t cfg;

/* Dispatches GET path on vm; the response is in lb->ex once lb->done. */
static void dispatch(lh_vm_t *vm, lh_loopback_t *lb, const char *path) {
  memset(lb, 0, sizeof(*lb));
  lb->req.method = "GET";
  lb->req.url = path;
  lb->req.url_len = strlen(path);
  lb->req.path = path;
  lb->req.path_len = strlen(path);
  lb->ex.req = &lb->req;
  lb->ex.request_id = "test-1";
  lb->ex.client_addr = "127.0.0.1";
  lb->ex.done = on_done;
  lh_buf_init(&lb->ex.body);
  lh_buf_init(&lb->ex.headers);
  unsigned allowed;
  LH_CHECK_INT(
      lh_router_match(lh_vm_router(vm), LH_M_GET, path, strlen(path), &lb->ex.match, &allowed), 0);
  lh_vm_dispatch(vm, &lb->ex);
}

static void run_until_done(lh_loopback_t *lb) {
  while (!lb->done && uv_run(&loop, UV_RUN_ONCE))
    ;
}

static void free_lb(lh_loopback_t *lb) {
  lh_buf_free(&lb->ex.body);
  lh_buf_free(&lb->ex.headers);
}

static int body_has(lh_loopback_t *lb, const char *s) {
  lh_buf_putc(&lb->ex.body, '\0');
  return strstr(lb->ex.body.data, s) != NULL;
}

static lh_vm_t *make_vm(void) {
  lh_vm_t *vm = NULL;
  char err[1024] = "";
  int rc = lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "  vm: %s\n", err);
  LH_CHECK_INT(rc, 0);
  return vm;
}

static void test_route_answers(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  lh_loopback_t lb;
  dispatch(vm, &lb, "/hello/w%6Frld");
  run_until_done(&lb);
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK_INT(lb.ex.status, 200);
  LH_CHECK(body_has(&lb, "\"name\":\"world\""));
  LH_CHECK(body_has(&lb, "\"response_status\":true"));
  LH_CHECK_INT(lh_vm_busy(vm), 0);
  free_lb(&lb);
  lh_vm_free(vm);
}

static void test_lazy_request_fields(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  lh_loopback_t lb;
  lh_header_t hdr = {"x-a", 3, "one", 3};
  memset(&lb, 0, sizeof(lb));
  static const char path[] = "/echo";
  lb.req.method = "GET";
  lb.req.path = path;
  lb.req.path_len = sizeof(path) - 1;
  lb.req.query = "a=b%20c";
  lb.req.query_len = 7;
  lb.req.headers = &hdr;
  lb.req.nheaders = 1;
  lb.ex.req = &lb.req;
  lb.ex.done = on_done;
  lh_buf_init(&lb.ex.body);
  lh_buf_init(&lb.ex.headers);
  unsigned allowed;
  LH_CHECK_INT(
      lh_router_match(lh_vm_router(vm), LH_M_GET, path, sizeof(path) - 1, &lb.ex.match, &allowed),
      0);
  lh_vm_dispatch(vm, &lb.ex);
  LH_CHECK_INT(lb.ex.status, 200);
  LH_CHECK(body_has(&lb, "\"x\":\"one\""));
  LH_CHECK(body_has(&lb, "\"q\":\"b c\""));
  free_lb(&lb);
  /* a request table kept past its request: its lazy fields refuse, the worker carries on */
  dispatch(vm, &lb, "/stale");
  LH_CHECK_INT(lb.ex.status, 500);
  free_lb(&lb);
  lh_vm_free(vm);
}

/* The hook convention: the value, or nil, code, message; a known runtime code answers with its
 * kind's status, any other code with the hook's own (403 for a policy). */
static void test_policy_refusals_follow_one_convention(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  lh_loopback_t lb;
  dispatch(vm, &lb, "/p/retry");
  LH_CHECK_INT(lb.ex.status, 503);
  LH_CHECK(body_has(&lb, "\"code\":\"service_unavailable\""));
  lh_buf_putc(&lb.ex.headers, '\0');
  LH_CHECK(strstr(lb.ex.headers.data, "Retry-After: 5\r\n") != NULL);
  free_lb(&lb);
  dispatch(vm, &lb, "/p/own");
  LH_CHECK_INT(lb.ex.status, 403);
  LH_CHECK(body_has(&lb, "\"code\":\"no_entry\""));
  LH_CHECK(body_has(&lb, "\"message\":\"Closed\""));
  free_lb(&lb);
  dispatch(vm, &lb, "/p/default");
  LH_CHECK_INT(lb.ex.status, 403);
  LH_CHECK(body_has(&lb, "\"code\":\"forbidden\""));
  free_lb(&lb);
  /* the deprecated shape nil, status, code, message still works */
  dispatch(vm, &lb, "/p/legacy");
  LH_CHECK_INT(lb.ex.status, 418);
  LH_CHECK(body_has(&lb, "\"code\":\"teapot\""));
  free_lb(&lb);
  lh_vm_free(vm);
}

static void test_budget_exceeded(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  lh_loopback_t lb;
  dispatch(vm, &lb, "/spin");
  LH_CHECK_INT(lb.done, 1); /* never yields: done before dispatch returns */
  LH_CHECK_INT(lb.ex.status, 500);
  LH_CHECK(body_has(&lb, "script_budget_exceeded"));
  free_lb(&lb);
  /* the state carries on */
  dispatch(vm, &lb, "/hello/x");
  LH_CHECK_INT(lb.ex.status, 200);
  free_lb(&lb);
  lh_vm_free(vm);
}

/* A request past its memory share: its response is handed over before the state is collected and
 * trimmed, and a second one right after is not collected again (rate limit), but owes it. */
static void test_give_back_after_done_and_rate_limited(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  g_done_vm = vm;
  lh_loopback_t lb;
  unsigned long long t0 = lh_now_ns();
  dispatch(vm, &lb, "/hog");
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK_INT(lb.ex.status, 500);
  LH_CHECK_INT(g_give_backs_at_done, 0); /* done came first */
  LH_CHECK_INT(vm->give_backs, 1);
  free_lb(&lb);
  dispatch(vm, &lb, "/hog");
  LH_CHECK_INT(lb.ex.status, 500);
  if (lh_now_ns() - t0 < 200ULL * 1000000ULL) { /* within the 250 ms interval */
    LH_CHECK_INT(vm->give_backs, 1);
    LH_CHECK_INT(vm->trim_owed, 1);
  }
  free_lb(&lb);
  usleep(260 * 1000);
  dispatch(vm, &lb, "/hello/x"); /* owed: collected now */
  LH_CHECK_INT(lb.ex.status, 200);
  LH_CHECK_INT(vm->trim_owed, 0);
  free_lb(&lb);
  g_done_vm = NULL;
  lh_vm_free(vm);
}

static void test_task_woken_by_job(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  lh_loopback_t lb;
  dispatch(vm, &lb, "/job");
  LH_CHECK_INT(lb.done, 0); /* suspended on the pool */
  LH_CHECK_INT(lh_vm_busy(vm), 1);
  run_until_done(&lb);
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK_INT(lb.ex.status, 200);
  LH_CHECK(body_has(&lb, "\"worked\":42"));
  LH_CHECK_INT(lh_vm_busy(vm), 0);
  free_lb(&lb);
  lh_vm_free(vm);
}

static int idle_calls;
static void on_idle(void *ud) {
  (void)ud;
  idle_calls++;
}

static void test_cancel_wakes_sleepers(void) {
  lh_vm_t *vm = make_vm();
  if (!vm)
    return;
  idle_calls = 0;
  lh_vm_on_idle(vm, on_idle, NULL);
  lh_loopback_t lb;
  dispatch(vm, &lb, "/sleep");
  LH_CHECK_INT(lb.done, 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  LH_CHECK_INT(lb.done, 0);
  unsigned long long t0 = lh_now_ns();
  lh_vm_cancel(vm); /* the sleep's cleanup runs: the handler resumes now */
  run_until_done(&lb);
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK(lh_now_ns() - t0 < 5000000000ULL); /* not the handler's 60 s */
  LH_CHECK_INT(lb.ex.status, 200);
  LH_CHECK(body_has(&lb, "woke"));
  LH_CHECK_INT(idle_calls, 1);
  free_lb(&lb);
  /* after cancellation, a new sleep fails at once */
  dispatch(vm, &lb, "/sleep");
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK_INT(lb.ex.status, 500);
  free_lb(&lb);
  /* ... and so does a new pool job: answered at once (nil, "unavailable"), nothing submitted */
  dispatch(vm, &lb, "/job");
  LH_CHECK_INT(lb.done, 1);
  LH_CHECK(!body_has(&lb, "42"));
  free_lb(&lb);
  uv_run(&loop, UV_RUN_NOWAIT); /* the cancelled timer's close callback */
  lh_vm_free(vm);
}

/* Each VM keeps the API description of its own generation: a route added to the scripts shows in
 * the next VM's document, never in the one already built. */
static void test_openapi_per_generation(void) {
  lh_vm_t *old = NULL, *cur = NULL;
  char err[1024] = "";
  LH_CHECK_INT(lh_vm_create(&old, &cfg, &loop, cq, err, sizeof(err)), 0);
  write_file("routes/extra.lua",
             "return { routes = { { method = 'GET', path = '/extra/{n}', name = 'extra.read',\n"
             "  handler = function() return 200, {} end } } }\n");
  LH_CHECK_INT(lh_vm_create(&cur, &cfg, &loop, cq, err, sizeof(err)), 0);
  char path[256];
  snprintf(path, sizeof(path), "%s/routes/extra.lua", dir);
  unlink(path);
  if (!old || !cur) {
    lh_vm_free(old);
    lh_vm_free(cur);
    return;
  }
  size_t old_len, cur_len;
  const char *a = lh_vm_openapi(old, &old_len), *b = lh_vm_openapi(cur, &cur_len);
  LH_CHECK(strncmp(a, "{\"openapi\":\"3.1.0\",", 19) == 0);
  LH_CHECK(strlen(a) == old_len && strlen(b) == cur_len);
  LH_CHECK(strstr(a, "\"/hello/{name}\"") != NULL && strstr(b, "\"/hello/{name}\"") != NULL);
  LH_CHECK(strstr(a, "/extra/{n}") == NULL);
  LH_CHECK(strstr(b, "\"/extra/{n}\"") != NULL && strstr(b, "\"extra.read\"") != NULL);
  char version[40];
  snprintf(version, sizeof(version), "\"version\":\"%s\"", lh_vm_generation(cur));
  LH_CHECK(strstr(b, version) != NULL);
  LH_CHECK(strcmp(lh_vm_generation(old), lh_vm_generation(cur)) != 0);
  lh_vm_free(old);
  lh_vm_free(cur);
}

static void test_hook_defined_twice_is_refused(void) {
  write_file("routes/other.lua", "return {\n  on_start = function() return true end,\n}\n");
  lh_vm_t *vm = NULL;
  char err[1024] = "";
  LH_CHECK_INT(lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err)), LH_EINVAL);
  LH_CHECK(strstr(err, "'on_start' is already defined at") != NULL);
  LH_CHECK(strstr(err, "app.lua:") != NULL);
  LH_CHECK(strstr(err, "routes/other.lua:2") != NULL);
  char path[256];
  snprintf(path, sizeof(path), "%s/routes/other.lua", dir);
  unlink(path);
  lh_vm_free(vm);
}

/* admin_policy: the loader adds GET and POST /admin/reload under the host's reserved /admin/,
 * guarded by that policy; scripts still cannot declare a route there, and the policy must exist. */
static void test_admin_policy_routes(void) {
  char path[256];
  snprintf(path, sizeof(path), "%s/routes/admin.lua", dir);
  write_file("routes/admin.lua", "return { admin_policy = 'p_own' }\n");
  lh_vm_t *vm = NULL;
  char err[1024] = "";
  LH_CHECK_INT(lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err)), 0);
  if (vm) {
    lh_route_match_t m;
    unsigned allowed = 0;
    LH_CHECK_INT(lh_router_match(lh_vm_router(vm), LH_M_POST, "/admin/reload", 13, &m, &allowed),
                 0);
    LH_CHECK_STR(lh_vm_route_template(vm, m.route_id), "/admin/reload");
    LH_CHECK_INT(lh_router_match(lh_vm_router(vm), LH_M_GET, "/admin/reload", 13, &m, &allowed), 0);
    LH_CHECK_INT(lh_router_match(lh_vm_router(vm), LH_M_DELETE, "/admin/reload", 13, &m, &allowed),
                 LH_EMETHOD);
    lh_vm_free(vm);
    vm = NULL;
  }
  write_file("routes/admin.lua", "return { admin_policy = 'nobody' }\n");
  LH_CHECK_INT(lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err)), LH_EINVAL);
  LH_CHECK(strstr(err, "unknown policy 'nobody'") != NULL);
  lh_vm_free(vm);
  vm = NULL;
  write_file("routes/admin.lua", "return { admin_policy = 42 }\n");
  LH_CHECK_INT(lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err)), LH_EINVAL);
  LH_CHECK(strstr(err, "'admin_policy' must be the name of a policy") != NULL);
  lh_vm_free(vm);
  vm = NULL;
  write_file("routes/admin.lua", "return { routes = { { method = 'GET', path = '/admin/mine',\n"
                                 "  handler = function() return 200, {} end } } }\n");
  LH_CHECK_INT(lh_vm_create(&vm, &cfg, &loop, cq, err, sizeof(err)), LH_EINVAL);
  LH_CHECK(strstr(err, "reserved for the host") != NULL);
  lh_vm_free(vm);
  unlink(path);
}

int main(void) {
  if (!mkdtemp(dir))
    return 1;
  char sub[256];
  snprintf(sub, sizeof(sub), "%s/routes", dir);
  mkdir(sub, 0700);
  write_file("app.lua", "return {\n  on_start = function() return true end,\n}\n");
  snprintf(sub, sizeof(sub), "%s/policies", dir);
  mkdir(sub, 0700);
  write_file("policies/p.lua",
             "return { policies = {\n"
             "  p_retry = function() return nil, 'unavailable' end,\n"
             "  p_own = function() return nil, 'no_entry', 'Closed' end,\n"
             "  p_default = function() return false end,\n"
             "  p_legacy = function() return false, 418, 'teapot', 'Short and stout' end,\n"
             "} }\n");
  write_file("routes/t.lua",
             "local core = require 'luahost'\n"
             "local response = require 'luahost.response'\n"
             "local vmtest = require 'luahost.vmtest'\n"
             "local stash\n"
             "local function ok() return response.ok('ok') end\n"
             "return { routes = {\n"
             "  { method = 'GET', path = '/hello/{name}', handler = function(req)\n"
             "      return response.ok('hi', { name = req.params.name }) end },\n"
             "  { method = 'GET', path = '/spin', handler = function() while true do end end },\n"
             "  { method = 'GET', path = '/hog', handler = function()\n"
             "      local t = {} for i = 1, 1e9 do t[i] = i end end },\n"
             "  { method = 'GET', path = '/p/retry', policy = 'p_retry', handler = ok },\n"
             "  { method = 'GET', path = '/p/own', policy = 'p_own', handler = ok },\n"
             "  { method = 'GET', path = '/p/default', policy = 'p_default', handler = ok },\n"
             "  { method = 'GET', path = '/p/legacy', policy = 'p_legacy', handler = ok },\n"
             "  { method = 'GET', path = '/job', handler = function()\n"
             "      return response.ok('job', { worked = vmtest.job() }) end },\n"
             "  { method = 'GET', path = '/echo', handler = function(req)\n"
             "      stash = req\n"
             "      return response.ok('echo', { x = req.headers['x-a'], q = req.query.a,\n"
             "                                   body = req.raw_body == nil }) end },\n"
             "  { method = 'GET', path = '/stale', handler = function()\n"
             "      return response.ok('stale', { b = stash.raw_body }) end },\n"
             "  { method = 'GET', path = '/sleep', handler = function()\n"
             "      core.sleep(60000); return response.ok('woke') end },\n"
             "} }\n");
  lh_config_defaults(&cfg);
  snprintf(cfg.scripts, sizeof(cfg.scripts), "%s", dir);
  cfg.script_budget_ms = 50 * (int)lh_test_time_scale();
  lh_modules_add(&vmtest_module);
  uv_loop_init(&loop);
  lh_cq_create(&cq, &loop);
  lh_pool_t *pool;
  lh_pool_create(&pool, "vmtest", 1, 4);
  lh_pools_register(pool);

  LH_RUN(test_route_answers);
  LH_RUN(test_lazy_request_fields);
  LH_RUN(test_policy_refusals_follow_one_convention);
  LH_RUN(test_budget_exceeded);
  LH_RUN(test_give_back_after_done_and_rate_limited);
  LH_RUN(test_task_woken_by_job);
  LH_RUN(test_cancel_wakes_sleepers);
  LH_RUN(test_hook_defined_twice_is_refused);
  LH_RUN(test_admin_policy_routes);
  LH_RUN(test_openapi_per_generation);

  lh_pools_destroy_all();
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    return 1;
  return lh_test_done();
}
