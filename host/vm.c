/* vm.c: the VM lifecycle: a worker's Lua state for one generation of scripts (see vm.h), and the
 * tasks that run on it.
 *
 * Creating a VM: read the scripts (script_set.c), open a state with the guarded string library
 * (pattern.c), the budget hook (budget.c) and the scheduler attached, preload every module of the
 * registry (lua-bindings/register.c), let luahost.loader build the generation, and add its routes
 * to the C router. Running one: each request or hook is a task, a coroutine anchored in the
 * registry until it finishes, resumed under the time budget it has left. Scripts run in LuaJIT's
 * interpreter unless the JIT is turned on (budget.h says why). */
#include "vm.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh.h"
#include "log.h"
#include "metrics.h"
#include "pattern.h"
#include "register.h"
#include "script_set.h"
#include "vm_internal.h"

static const char vm_key = 'v'; /* registry key: its address */

lh_vm_t *lh_vm_of(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&vm_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lh_vm_t *vm = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return vm;
}

/* ---- building the state ---- */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* Checks the generation's routes (the table at the top of the stack) and adds them to the C
 * router: the one owner of route checks. The loader checks what only Lua can (a handler function,
 * the keys, the schemas, the policy); the method list, reserved paths, the path's shape and
 * conflicts are decided here, by the router's own rules, and reported at the handler's file and
 * line. */
static int add_routes(lh_vm_t *vm, char *err, size_t errlen) {
  lua_State *L = vm->L;
  int nroutes = (int)lua_objlen(L, -1);
  vm->templates = calloc((size_t)nroutes + 1, sizeof(char *));
  if (!vm->templates) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  vm->ntemplates = nroutes;
  for (int i = 1; i <= nroutes; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "method");
    lua_getfield(L, -2, "path");
    lua_getfield(L, -3, "where");
    lua_getfield(L, -4, "host"); /* the loader's own routes (GET and POST /admin/reload) */
    int host = lua_toboolean(L, -1);
    lua_pop(L, 1);
    const char *method = lua_tostring(L, -3), *path = lua_tostring(L, -2);
    const char *where = lua_tostring(L, -1);
    char why[256] = "";
    int m = lh_method_parse(method, strlen(method));
    int rc = LH_EINVAL;
    if (m < 0) {
      size_t pos = (size_t)snprintf(why, sizeof(why), "'method' must be one of");
      for (int k = 0; k < LH_M__COUNT && pos < sizeof(why); k++)
        pos += (size_t)snprintf(why + pos, sizeof(why) - pos, "%s%s", k ? ", " : " ",
                                lh_method_name((lh_method_t)k));
    } else if (!host && lh_reserved_for_routes(path, strlen(path)) >= 0) {
      snprintf(why, sizeof(why), "path '%s' is reserved for the host", path);
    } else {
      rc = lh_router_add(vm->router, (lh_method_t)m, path, i, why, sizeof(why));
      if (rc == 0 && !(vm->templates[i] = strdup(path))) {
        snprintf(why, sizeof(why), "out of memory");
        rc = LH_ENOMEM;
      }
    }
    lua_pop(L, 4);
    if (rc != 0) {
      snprintf(err, errlen, "%s: route %s %s: %s", where, method, path, why);
      return LH_EINVAL;
    }
  }
  return 0;
}

static size_t request_share(const lh_vm_t *vm) {
  return (size_t)vm->cfg->request_memory_mb << 20;
}

static int load_generation(lh_vm_t *vm, const lh_script_set_t *set, char *err, size_t errlen) {
  lua_State *L = vm->L;
  int base = lua_gettop(L);
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luahost.loader");
  if (lua_pcall(L, 1, 1, base + 1) != 0)
    goto fail;
  lua_getfield(L, -1, "load");
  lua_createtable(L, 0, (int)set->n);
  lua_createtable(L, (int)set->n, 0);
  for (size_t i = 0; i < set->n; i++) {
    lua_pushlstring(L, set->files[i].src, set->files[i].len);
    lua_setfield(L, -3, set->files[i].path);
    lua_pushstring(L, set->files[i].path);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_pushstring(L, vm->cfg->scripts);
  lua_getglobal(L, "require");
  lh_modules_push_script_names(L);
  /* Loading runs script code (module bodies): the budget applies there too. */
  lh_budget_arm(&vm->budget, (unsigned long long)vm->cfg->script_budget_ms * 1000000ULL);
  lh_memory_arm(&vm->memory, 0, request_share(vm));
  int rc = lua_pcall(L, 5, 1, base + 1);
  lh_memory_disarm(&vm->memory);
  lh_budget_disarm(&vm->budget, L);
  if (rc != 0)
    goto fail;
  /* base+1 traceback, base+2 loader, base+3 generation */
  lua_getfield(L, -1, "routes");
  if (add_routes(vm, err, errlen) != 0) {
    lua_settop(L, base);
    return LH_EINVAL;
  }
  vm->routes_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops routes */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luahost.runtime");
  if (lua_pcall(L, 1, 1, base + 1) != 0)
    goto fail;
  /* base+4: the runtime module */
  static const char *const makers[] = {"new", "start_runner", "command_runner"};
  int *refs[] = {&vm->run_ref, &vm->start_ref, &vm->command_ref};
  for (int i = 0; i < 3; i++) {
    lua_getfield(L, base + 4, makers[i]);
    lua_pushvalue(L, base + 3);
    if (lua_pcall(L, 1, 1, base + 1) != 0)
      goto fail;
    *refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, base + 3);
  vm->gen_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* for the policy tests (vm_tests.c) */
  lua_getfield(L, base + 3, "on_start");
  vm->has_start_hooks = lua_objlen(L, -1) > 0;
  lua_settop(L, base);
  return 0;
fail:
  snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "unknown error");
  lua_settop(L, base);
  return LH_EINVAL;
}

static int open_state(lh_vm_t *vm, char *err, size_t errlen) {
  lua_State *L = vm->L =
      lh_memory_newstate(&vm->memory, &vm->budget, (size_t)vm->cfg->script_memory_mb << 20);
  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state");
    return LH_ENOMEM;
  }
  luaL_openlibs(L);
  lh_pattern_guard_install(L);
  lh_budget_guard_install(L);
  if (!vm->cfg->jit)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lh_budget_install(L, &vm->budget, vm->cfg->hook_interval > 0 ? vm->cfg->hook_interval : 10000,
                    vm->cfg->script_budget_ms);
  lh_sched_attach(L, &vm->sched);
  lua_pushlightuserdata(L, (void *)&vm_key);
  lua_pushlightuserdata(L, vm);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return lh_modules_preload(L, err, errlen);
}

int lh_vm_create(lh_vm_t **out, const lh_config_t *cfg, uv_loop_t *loop, lh_cq_t *cq, char *err,
                 size_t errlen) {
  lh_script_set_t set = {0};
  *out = NULL;
  int rc = lh_script_set_read(&set, cfg->scripts, err, errlen);
  if (rc == 0)
    rc = lh_vm_create_from(out, cfg, &set, loop, cq, err, errlen);
  lh_script_set_free(&set);
  return rc;
}

int lh_vm_create_from(lh_vm_t **out, const lh_config_t *cfg, const lh_script_set_t *set,
                      uv_loop_t *loop, lh_cq_t *cq, char *err, size_t errlen) {
  *out = NULL;
  lh_vm_t *vm = calloc(1, sizeof(*vm));
  if (!vm) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  vm->cfg = cfg;
  vm->loop = loop;
  vm->cq = cq;
  vm->run_ref = vm->routes_ref = vm->start_ref = vm->command_ref = vm->gen_ref = LUA_NOREF;
  int rc = lh_router_create(&vm->router);
  if (rc == 0) {
    memcpy(vm->generation, set->generation, sizeof(vm->generation));
    rc = open_state(vm, err, errlen);
  }
  if (rc == 0)
    rc = load_generation(vm, set, err, errlen);
  if (rc != 0) {
    if (err[0] == '\0')
      snprintf(err, errlen, "%s", lh_strerror(rc));
    lh_vm_free(vm);
    return rc;
  }
  *out = vm;
  return 0;
}

void lh_vm_free(lh_vm_t *vm) {
  if (!vm)
    return;
  if (vm->L)
    lua_close(vm->L);
  lh_router_free(vm->router);
  if (vm->templates)
    for (int i = 0; i <= vm->ntemplates; i++)
      free(vm->templates[i]);
  free(vm->templates);
  free(vm);
}

int lh_vm_busy(const lh_vm_t *vm) {
  return vm->busy;
}

const lh_router_t *lh_vm_router(const lh_vm_t *vm) {
  return vm->router;
}

const char *lh_vm_route_template(const lh_vm_t *vm, int route_id) {
  if (route_id < 1 || route_id > vm->ntemplates || !vm->templates[route_id])
    return "";
  return vm->templates[route_id];
}

const char *lh_vm_generation(const lh_vm_t *vm) {
  return vm->generation;
}

const lh_config_t *lh_vm_config(const lh_vm_t *vm) {
  return vm->cfg;
}

void lh_vm_on_idle(lh_vm_t *vm, void (*cb)(void *ud), void *ud) {
  vm->idle_cb = cb;
  vm->idle_ud = ud;
}

void lh_vm_cancel(lh_vm_t *vm) {
  lh_sched_cancel(&vm->sched);
}

/* ---- tasks ---- */

static const char *route_name(lh_vm_t *vm, int id) {
  lua_State *L = vm->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->routes_ref);
  lua_rawgeti(L, -1, id);
  lua_getfield(L, -1, "name");
  const char *name = lua_tostring(L, -1);
  lua_pop(L, 3); /* the string stays alive in the route table */
  return name ? name : "?";
}

void lh_vtask_release(lh_vtask_t *vt) {
  lh_vm_t *vm = vt->vm;
  luaL_unref(vm->L, LUA_REGISTRYINDEX, vt->co_ref);
  free(vt);
  vm->busy--;
}

static void idle_check(lh_vm_t *vm) {
  if (vm->busy == 0 && vm->idle_cb)
    vm->idle_cb(vm->idle_ud);
}

/* At most one give_back collection per this many ms: a full collection and malloc_trim cost
 * milliseconds on a large state, and under load every request could ask for one. */
#define LH_VM_GIVE_BACK_MS 250

/* After a task was released and its response handed over (ex->done). The ceiling counts garbage
 * too, and the collector runs only when scripts allocate: once the state holds more than half its
 * ceiling, collect now, so finished requests do not count against the next ones. After a task
 * overran a limit, also collect what it left and hand the freed pages back to the system, so one
 * runaway request does not keep the worker's RSS at its peak. Rate-limited: a trim that is due
 * within LH_VM_GIVE_BACK_MS of the last one is owed and done after a later request. */
static void give_back(lh_vm_t *vm, int exceeded) {
  if (exceeded)
    vm->trim_owed = 1;
  if (!vm->trim_owed && vm->memory.used <= vm->memory.state_limit / 2)
    return;
  unsigned long long now = lh_now_ns();
  if (vm->gave_back_ns && now - vm->gave_back_ns < LH_VM_GIVE_BACK_MS * 1000000ULL)
    return;
  vm->gave_back_ns = now;
  vm->give_backs++;
  lua_gc(vm->L, LUA_GCCOLLECT, 0);
  if (vm->trim_owed)
    malloc_trim(0);
  vm->trim_owed = 0;
}

static void finish_request(lh_vtask_t *vt, int exceeded) {
  lh_vm_t *vm = vt->vm;
  lh_exchange_t *ex = vt->ex;
  lh_vm_request_over(vt->req_handle);
  lh_vtask_release(vt);
  ex->done(ex);
  give_back(vm, exceeded);
  idle_check(vm);
}

static void resume_task(lh_task_t *t, int nargs) {
  lh_vtask_t *vt = LH_CONTAINER_OF(t, lh_vtask_t, task);
  lh_vm_t *vm = vt->vm;
  lh_exchange_t *ex = vt->ex;
  unsigned long long budget = (unsigned long long)vm->cfg->script_budget_ms * 1000000ULL;
  unsigned long long start = lh_now_ns();
  lh_budget_arm(&vm->budget, budget > vt->used_ns ? budget - vt->used_ns : 0);
  lh_memory_arm(&vm->memory, vt->used_bytes, request_share(vm));
  lh_sched_enter(&vm->sched, t);
  int rc = lua_resume(t->co, nargs);
  lh_sched_leave(&vm->sched);
  vt->used_bytes = lh_memory_disarm(&vm->memory);
  /* LH_VM_MEMORY: past its memory share; LH_VM_BUDGET: past its time */
  int exceeded = vm->memory.exceeded ? LH_VM_MEMORY : vm->budget.exceeded ? LH_VM_BUDGET : 0;
  if (exceeded == LH_VM_BUDGET)
    lh_metrics_budget_exceeded();
  lh_budget_disarm(&vm->budget, vm->L);
  vt->used_ns += lh_now_ns() - start;

  if (rc == LUA_YIELD && t->suspended)
    return; /* waiting for a job or a timer; resume_task runs again when it is done */
  if (!ex) {
    lh_vm_finish_hook(vt, rc, exceeded);
    give_back(vm, exceeded);
    idle_check(vm);
    return;
  }
  lh_buf_reset(&ex->body);
  lh_buf_reset(&ex->headers);
  ex->content_type[0] = '\0';
  char why[2048];
  if (rc == 0) {
    if (lh_vm_collect_response(t->co, ex, why, sizeof(why)) == 0) {
      finish_request(vt, 0);
      return;
    }
  } else if (exceeded == LH_VM_MEMORY) {
    snprintf(why, sizeof(why), "memory share of %d MB exceeded", vm->cfg->request_memory_mb);
  } else if (exceeded) {
    snprintf(why, sizeof(why), "script budget of %d ms exceeded", vm->cfg->script_budget_ms);
  } else if (rc == LUA_YIELD) {
    snprintf(why, sizeof(why), "the handler yielded outside a host function");
  } else {
    const char *msg = lua_tostring(t->co, -1);
    luaL_traceback(vm->L, t->co, msg ? msg : "(error object is not a string)", 0);
    snprintf(why, sizeof(why), "%s", lua_tostring(vm->L, -1));
    lua_pop(vm->L, 1);
  }
  /* Only failures need the route's name: it is looked up here, not on every request. */
  lh_error("route %s: %s%s (request %s)", route_name(vm, ex->match.route_id),
           rc == 0 ? "bad response: " : "", why, ex->request_id);
  lh_vm_set_error(ex, exceeded == LH_VM_MEMORY ? "script_memory_exceeded"
                      : exceeded               ? "script_budget_exceeded"
                                               : "internal_error");
  finish_request(vt, exceeded);
}

lh_vtask_t *lh_vtask_new(lh_vm_t *vm) {
  lh_vtask_t *vt = calloc(1, sizeof(*vt));
  if (!vt)
    return NULL;
  vt->vm = vm;
  vt->task.loop = vm->loop;
  vt->task.cq = vm->cq;
  vt->task.sched = &vm->sched;
  vt->task.resume = resume_task;
  vt->task.co = lua_newthread(vm->L);
  vt->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
  vm->busy++;
  return vt;
}

void lh_vtask_start(lh_vtask_t *vt, int nargs) {
  resume_task(&vt->task, nargs);
}

void lh_vm_dispatch(lh_vm_t *vm, lh_exchange_t *ex) {
  lh_vtask_t *vt = lh_vtask_new(vm);
  if (!vt) {
    lh_vm_set_error(ex, "out_of_memory");
    ex->done(ex);
    return;
  }
  vt->ex = ex;
  lua_State *co = vt->task.co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->run_ref);
  lua_pushinteger(co, ex->match.route_id);
  vt->req_handle = lh_vm_push_request(co, ex);
  lh_vtask_start(vt, 2);
}
