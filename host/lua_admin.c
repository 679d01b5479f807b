/* lua_admin.c: the `luahost.admin` module: the live-reload status and a reload, for the scripts
 * that expose them on the public listener behind their own admin policy (docs/lua-api.md).
 *
 *   luahost.admin.status() -> table       the status of GET /admin/reload (reload.h); no yield
 *   luahost.admin.reload(trigger) -> ok, status
 *                                          asks for a reload and waits for its outcome: the
 *                                          request's coroutine yields while a thread of the
 *                                          "admin" pool waits (a loop never blocks). ok is true
 *                                          when the new generation is live; nil, "draining" when
 *                                          the host began stopping before the reload ran.
 * Without a running server (`luahost check`, the busted specs) both answer nil, "unavailable"; so
 * does reload() in a candidate being validated (its on_start hooks run on the reload thread). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "lh.h"
#include "lua_api.h"
#include "reload.h"
#include "scheduler.h"

static int push_status_json(lua_State *L, const lh_buf_t *b) {
  char err[128];
  if (b->failed || lh_json_decode(L, b->data, b->len, err, sizeof(err)) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  return 1;
}

static int l_status(lua_State *L) {
  lh_reloader_t *r = lh_reloader_global();
  if (!r) {
    lua_pushnil(L);
    lua_pushliteral(L, "unavailable");
    return 2;
  }
  lh_buf_t b;
  lh_buf_init(&b);
  lh_reload_status(r, &b);
  int n = push_status_json(L, &b);
  lh_buf_free(&b);
  return n;
}

typedef struct {
  lh_ljob_t lj;
  char trigger[32];
  int ok;
  lh_buf_t status;
} lh_reload_job_t;

static void reload_work(lh_job_t *job) {
  lh_reload_job_t *j = LH_CONTAINER_OF(job, lh_reload_job_t, lj.job);
  lh_reloader_t *r = lh_reloader_global();
  j->ok = r ? lh_reload_run(r, j->trigger, &j->status) : 0;
}

static int reload_push(lh_ljob_t *lj, lua_State *co) {
  lh_reload_job_t *j = LH_CONTAINER_OF(lj, lh_reload_job_t, lj);
  if (lj->job.cancelled || j->status.len == 0) {
    lua_pushnil(co);
    lua_pushliteral(co, "unavailable");
    return 2;
  }
  if (j->ok < 0) { /* the host is stopping: no reload ran */
    lua_pushnil(co);
    lua_pushliteral(co, "draining");
    return 2;
  }
  lua_pushboolean(co, j->ok);
  if (push_status_json(co, &j->status) != 1) {
    lua_pop(co, 2);
    lua_pushnil(co);
    lua_pushliteral(co, "out of memory");
  }
  return 2;
}

static void reload_free(lh_ljob_t *lj) {
  lh_reload_job_t *j = LH_CONTAINER_OF(lj, lh_reload_job_t, lj);
  lh_buf_free(&j->status);
  free(j);
}

static int l_reload(lua_State *L) {
  const char *trigger = luaL_optstring(L, 1, "api");
  if (!lh_reloader_global() || lh_reload_on_this_thread()) {
    lua_pushnil(L);
    lua_pushliteral(L, "unavailable");
    return 2;
  }
  lh_reload_job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return luaL_error(L, "out of memory");
  snprintf(j->trigger, sizeof(j->trigger), "%s", trigger);
  lh_buf_init(&j->status);
  j->lj.job.work = reload_work;
  j->lj.push = reload_push;
  j->lj.free = reload_free;
  return lh_sched_await(L, "admin", &j->lj);
}

int lh_lua_admin_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"status", l_status}, {"reload", l_reload}, {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}
