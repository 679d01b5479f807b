/* vm_tests.c: the generation's policy tests (host/lua/policy_tests.lua), run as a task on a VM like
 * a hook (so under the script time budget, in a coroutine of their own), with this VM's own C
 * router as the router each test's request goes through. `luahost check` runs them (main.c); a
 * reload will run them on every candidate. */
#include <lauxlib.h>

#include "lua_api.h"
#include "vm_internal.h"

void lh_vm_run_policy_tests(lh_vm_t *vm, lh_vm_hook_cb cb, void *ud) {
  lua_State *L = vm->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luahost.policy_tests");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    cb(ud, 0, lua_tostring(L, -1) ? lua_tostring(L, -1) : "luahost.policy_tests failed to load");
    lua_pop(L, 1);
    return;
  }
  lh_vtask_t *vt = lh_vtask_new(vm);
  if (!vt) {
    lua_pop(L, 1);
    cb(ud, 0, "out of memory");
    return;
  }
  vt->hook_cb = cb;
  vt->hook_ud = ud;
  lua_State *co = vt->task.co;
  lua_getfield(L, -1, "run"); /* module, run */
  lua_xmove(L, co, 1);
  lua_pop(L, 1);
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->gen_ref);
  lh_lua_router_push_match(co, vm->router);
  lh_vtask_start(vt, 2);
}
