/* vm.h: one worker's Lua state for one generation of scripts: creation (host modules, sandbox,
 * loading and validating the scripts, building the C router), and running a request or a hook as a
 * task (a coroutine) under the script time budget. A VM belongs to the thread that created it.
 * The files: vm.c (lifecycle and tasks), vm_request.c, vm_response.c, vm_hooks.c, vm_tests.c. */
#ifndef LH_VM_H
#define LH_VM_H

#include <lua.h>
#include <uv.h>
#include "buf.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "router.h"

typedef struct lh_vm_s lh_vm_t;
typedef struct lh_exchange_s lh_exchange_t;

/* One request and its response, owned by the connection. The VM fills the response fields and
 * calls `done` exactly once (possibly before lh_vm_dispatch returns). */
struct lh_exchange_s {
  const lh_request_t *req;
  const char *request_id;
  const char *client_addr;
  lh_route_match_t match;
  /* response */
  int status;
  lh_buf_t headers; /* extra header lines, "Name: value\r\n" */
  lh_buf_t body;
  char content_type[128]; /* empty: application/json */
  char user_id[64];       /* the `id` of the user the request authenticated as, for the access log;
                             empty when none (the connection clears it after each line) */
  void (*done)(lh_exchange_t *ex);
};

/* Reads and validates the scripts in cfg->scripts and builds the state. On failure writes
 * "file:line: message" to err and returns LH_EINVAL. */
int lh_vm_create(lh_vm_t **out, const lh_config_t *cfg, uv_loop_t *loop, lh_cq_t *cq, char *err,
                 size_t errlen);
/* The same from scripts already read (script_set.h): every worker's VM of one generation is
 * built from one snapshot. The VM may be built on another thread than the one that runs loop;
 * it belongs to that loop's thread once handed over. */
struct lh_script_set_s;
int lh_vm_create_from(lh_vm_t **out, const lh_config_t *cfg, const struct lh_script_set_s *set,
                      uv_loop_t *loop, lh_cq_t *cq, char *err, size_t errlen);
/* Frees the state; only when no request is running on it (lh_vm_busy == 0). */
void lh_vm_free(lh_vm_t *vm);
int lh_vm_busy(const lh_vm_t *vm);
const lh_router_t *lh_vm_router(const lh_vm_t *vm);
/* The path template a route was declared with ("/users/{id}"), "" for an unknown id. Owned by
 * the VM. */
const char *lh_vm_route_template(const lh_vm_t *vm, int route_id);
const char *lh_vm_generation(const lh_vm_t *vm);
/* The generation's API description: OpenAPI 3.1 as JSON text, built once when the generation
 * loaded (host/lua/openapi.lua; a minimal document when that failed). Owned by the VM. */
const char *lh_vm_openapi(const lh_vm_t *vm, size_t *len);
const lh_config_t *lh_vm_config(const lh_vm_t *vm);
/* The VM of a Lua state (any of its coroutines), or NULL for a state no VM created. */
lh_vm_t *lh_vm_of(lua_State *L);
/* cb runs each time the last task on vm finishes (lh_vm_busy drops to 0); NULL to stop. */
void lh_vm_on_idle(lh_vm_t *vm, void (*cb)(void *ud), void *ud);
/* Shutdown, grace period over: cancels every cancellable wait (sleeps wake now, later sleeps
 * fail); tasks waiting for pool jobs finish when their jobs do. */
void lh_vm_cancel(lh_vm_t *vm);
/* Runs the route in ex->match for ex->req. */
void lh_vm_dispatch(lh_vm_t *vm, lh_exchange_t *ex);

/* Called once when a hook finishes: ok, and a text (on_start: the failure; a command: its result
 * as JSON). */
typedef void (*lh_vm_hook_cb)(void *ud, int ok, const char *text);
int lh_vm_has_start_hooks(const lh_vm_t *vm);
/* Runs the scripts' on_start hooks (command == NULL), or the command `command` with argv as its
 * argument list, in a coroutine on this VM's loop (so they may call yielding bindings). */
void lh_vm_run_hook(lh_vm_t *vm, const char *command, int argc, char **argv, lh_vm_hook_cb cb,
                    void *ud);
/* Runs the generation's policy tests (host/lua/policy_tests.lua) in a coroutine on this VM, each
 * test's request routed by this VM's router. cb gets ok and a text: the one-line summary ("7
 * routes, 4 policies, 40 policy tests passed"), or one line per failure and a count. Without a
 * loop (`luahost check`) a binding that would wait for a pool answers `unavailable` at once. */
void lh_vm_run_policy_tests(lh_vm_t *vm, lh_vm_hook_cb cb, void *ud);

#endif
