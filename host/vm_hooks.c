/* vm_hooks.c: the application's start hooks and commands, run as tasks on a VM like requests (so
 * they may call yielding bindings), with the result handed to a C callback: on_start once per
 * process (server.c retries it until it succeeds), a command from the command line (main.c). */
#include <lauxlib.h>

#include "vm_internal.h"

int lh_vm_has_start_hooks(const lh_vm_t *vm) {
  return vm->has_start_hooks;
}

void lh_vm_finish_hook(lh_vtask_t *vt, int rc, int exceeded) {
  lua_State *co = vt->task.co;
  int ok = 0;
  const char *text;
  if (rc == 0) {
    ok = lua_toboolean(co, 1);
    text = lua_tostring(co, 2);
  } else if (exceeded == LH_VM_MEMORY) {
    text = "script_memory_exceeded";
  } else if (exceeded) {
    text = "script_budget_exceeded";
  } else if (rc == LUA_YIELD) {
    text = "the hook yielded outside a host function";
  } else {
    text = lua_tostring(co, -1);
  }
  /* The text lives on the coroutine's stack: call back before releasing it. */
  vt->hook_cb(vt->hook_ud, ok, text ? text : "");
  lh_vtask_release(vt);
}

void lh_vm_run_hook(lh_vm_t *vm, const char *command, int argc, char **argv, lh_vm_hook_cb cb,
                    void *ud) {
  lh_vtask_t *vt = lh_vtask_new(vm);
  if (!vt) {
    cb(ud, 0, "out of memory");
    return;
  }
  vt->hook_cb = cb;
  vt->hook_ud = ud;
  lua_State *co = vt->task.co;
  int nargs = 0;
  if (command) {
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->command_ref);
    lua_pushstring(co, command);
    lua_createtable(co, argc, 0);
    for (int i = 0; i < argc; i++) {
      lua_pushstring(co, argv[i]);
      lua_rawseti(co, -2, i + 1);
    }
    nargs = 2;
  } else {
    lua_rawgeti(co, LUA_REGISTRYINDEX, vm->start_ref);
  }
  lh_vtask_start(vt, nargs);
}
