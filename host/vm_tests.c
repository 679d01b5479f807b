/* vm_tests.c: the generation's policy tests (host/lua/policy_tests.lua), run as a task on a VM like
 * a hook (so under the script time budget, in a coroutine of their own), with this VM's own C
 * router as the router each test's request goes through. `luahost check` runs them (main.c); a
 * reload will run them on every candidate. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_api.h"
#include "vm_internal.h"

typedef struct {
  lh_vm_t *vm;
  lh_vm_hook_cb cb;
  void *ud;
} lh_tests_run_t;

/* The run is over. When the time budget stopped it, the runner's coroutine is dead mid-test: name
 * that test (luahost.policy_tests.current, read on the main state, which the budget no longer
 * stops) instead of a bare "script_budget_exceeded". */
static void tests_done(void *ud, int ok, const char *text) {
  lh_tests_run_t run = *(lh_tests_run_t *)ud;
  free(ud);
  if (ok || strncmp(text, "script_budget_exceeded", 22) != 0) {
    run.cb(run.ud, ok, text);
    return;
  }
  lua_State *L = run.vm->L;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "luahost.policy_tests");
  lua_getfield(L, -1, "current");
  const char *current = lua_tostring(L, -1);
  char why[2048];
  snprintf(why, sizeof(why), "%s: the script budget of %d ms was exceeded",
           current ? current : "policy tests", run.vm->cfg->script_budget_ms);
  lua_pop(L, 3);
  run.cb(run.ud, 0, why);
}

void lh_vm_run_policy_tests(lh_vm_t *vm, lh_vm_hook_cb cb, void *ud) {
  lua_State *L = vm->L;
  lh_tests_run_t *run = malloc(sizeof(*run));
  if (!run) {
    cb(ud, 0, "out of memory");
    return;
  }
  *run = (lh_tests_run_t){vm, cb, ud};
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luahost.policy_tests");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    free(run);
    cb(ud, 0, lua_tostring(L, -1) ? lua_tostring(L, -1) : "luahost.policy_tests failed to load");
    lua_pop(L, 1);
    return;
  }
  lh_vtask_t *vt = lh_vtask_new(vm);
  if (!vt) {
    lua_pop(L, 1);
    free(run);
    cb(ud, 0, "out of memory");
    return;
  }
  vt->hook_cb = tests_done;
  vt->hook_ud = run;
  lua_State *co = vt->task.co;
  lua_getfield(L, -1, "run"); /* module, run */
  lua_xmove(L, co, 1);
  lua_pop(L, 1);
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->gen_ref);
  lh_lua_router_push_match(co, vm->router);
  lh_vtask_start(vt, 2);
}
