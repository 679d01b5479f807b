/* vm_internal.h: what the VM's own files share (vm.c: the lifecycle and tasks; vm_request.c:
 * request marshalling; vm_response.c: response collection; vm_hooks.c: start hooks and commands;
 * vm_tests.c: the policy tests).
 * Nothing outside those files includes it. */
#ifndef LH_VM_INTERNAL_H
#define LH_VM_INTERNAL_H

#include <lua.h>

#include "budget.h"
#include "memory.h"
#include "scheduler.h"
#include "vm.h"

typedef struct lh_req_handle_s lh_req_handle_t;

struct lh_vm_s {
  lua_State *L;
  const lh_config_t *cfg;
  uv_loop_t *loop;
  lh_cq_t *cq;
  lh_router_t *router;
  int run_ref;     /* runtime.new(gen) */
  int start_ref;   /* runtime.start_runner(gen) */
  int command_ref; /* runtime.command_runner(gen) */
  int gen_ref;     /* the generation table (the policy tests run against it) */
  int has_start_hooks;
  int routes_ref;   /* the generation's route list, for names in logs */
  char **templates; /* route id (1-based) -> its path template, as declared */
  int ntemplates;
  int busy; /* tasks running or suspended on this state */
  lh_budget_t budget;
  lh_memory_t memory;
  lh_sched_t sched;
  unsigned long long gave_back_ns; /* the last give_back collection (vm.c), 0: none yet */
  unsigned give_backs;             /* collections give_back ran (tests) */
  int trim_owed;                   /* a task overran a limit since the last give_back */
  void (*idle_cb)(void *ud);       /* called when busy drops to 0 */
  void *idle_ud;
  char generation[17];
  char *openapi; /* the generation's API description (OpenAPI 3.1 JSON), malloc'd */
  size_t openapi_len;
};

typedef struct {
  lh_task_t task;
  lh_vm_t *vm;
  lh_exchange_t *ex; /* NULL for a hook */
  lh_req_handle_t *req_handle;
  lh_vm_hook_cb hook_cb;
  void *hook_ud;
  int co_ref;
  unsigned long long used_ns; /* script time spent so far by this task */
  long long used_bytes;       /* net bytes allocated so far by this task (memory.h) */
} lh_vtask_t;

/* Why a task failed: lua_resume's error came from a limit (memory.h, budget.h). */
enum { LH_VM_BUDGET = 1, LH_VM_MEMORY = 2 };

/* vm.c: a new task (a coroutine anchored in the registry), its first resume, and its release. */
lh_vtask_t *lh_vtask_new(lh_vm_t *vm);
void lh_vtask_start(lh_vtask_t *vt, int nargs);
void lh_vtask_release(lh_vtask_t *vt);

/* vm_request.c: pushes the request table for ex onto co; the handle lets lazy fields read ex until
 * lh_vm_request_over (called when the task finishes). */
lh_req_handle_t *lh_vm_push_request(lua_State *co, lh_exchange_t *ex);
void lh_vm_request_over(lh_req_handle_t *h);

/* vm_response.c: turns the handler's `status, body, headers` on co's stack into ex's response; on
 * failure writes why into `why` and returns LH_EINVAL or LH_ENOMEM. */
int lh_vm_collect_response(lua_State *co, lh_exchange_t *ex, char *why, size_t whylen);
/* Replaces ex's response by the error kind `kind` (internal_error when unknown). */
void lh_vm_set_error(lh_exchange_t *ex, const char *kind);

/* vm_hooks.c: a hook task finished with lua_resume's result rc. */
void lh_vm_finish_hook(lh_vtask_t *vt, int rc, int exceeded);

#endif
