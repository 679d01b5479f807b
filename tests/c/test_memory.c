/* test_memory.c: the script limits on a bare Lua state: the memory ceiling and share (memory.c),
 * the time budget reaching C functions through the allocator and xpcall-caught errors (budget.c),
 * and the pattern guard on short subjects (pattern.c). */
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <string.h>

#include "budget.h"
#include "lh.h"
#include "lh_test.h"
#include "memory.h"
#include "pattern.h"

static lh_budget_t budget;
static lh_memory_t mem;

static lua_State *new_state_hooked(size_t state_mb, int interval) {
  lua_State *L = lh_memory_newstate(&mem, &budget, state_mb << 20);
  if (!L)
    return NULL;
  luaL_openlibs(L);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF); /* as vm.c: budget.h says why */
  lh_pattern_guard_install(L);
  lh_budget_guard_install(L);
  lh_budget_install(L, &budget, interval, 200 * (int)lh_test_time_scale());
  return L;
}

static lua_State *new_state(size_t state_mb) {
  return new_state_hooked(state_mb, 1000);
}

/* Runs src as one task with a share of share_mb under a 200 ms budget; returns lua_pcall's code and
 * leaves the error message (or nothing) in msg. */
static int run(lua_State *L, const char *src, size_t share_mb, char *msg, size_t msglen) {
  msg[0] = '\0';
  if (luaL_loadstring(L, src) != 0) {
    snprintf(msg, msglen, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  lh_budget_arm(&budget, 200ULL * 1000000ULL * lh_test_time_scale());
  lh_memory_arm(&mem, 0, share_mb << 20);
  int rc = lua_pcall(L, 0, 0, 0);
  lh_memory_disarm(&mem);
  lh_budget_disarm(&budget, L);
  if (rc != 0) {
    snprintf(msg, msglen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
  }
  return rc;
}

static void test_a_task_past_its_share_fails_and_the_state_carries_on(void) {
  lua_State *L = new_state(256);
  if (!L)
    return;
  char msg[256];
  unsigned long long t0 = lh_now_ns();
  LH_CHECK(run(L, "local s = string.rep('x', 2^30)", 16, msg, sizeof(msg)) != 0);
  LH_CHECK(mem.exceeded);
  LH_CHECK(lh_now_ns() - t0 < 1000000000ULL * lh_test_time_scale());
  /* caught with pcall, the next instruction still fails */
  LH_CHECK(run(L, "while true do pcall(string.rep, 'x', 2^30) end", 16, msg, sizeof(msg)) != 0);
  LH_CHECK(mem.exceeded);
  LH_CHECK(run(L, "local t = {} for i = 1, 1e8 do t[i] = {i} end", 16, msg, sizeof(msg)) != 0);
  LH_CHECK(mem.exceeded);
  /* within the share: a new task gets its whole share again */
  /* a string costs its size twice while it is built (LuaJIT's buffer, then the string) */
  LH_CHECK(run(L, "local s = string.rep('x', 2^22) assert(#s == 2^22)", 16, msg, sizeof(msg)) == 0);
  LH_CHECK(!mem.exceeded);
  LH_CHECK(run(L, "x = 1 + 1", 16, msg, sizeof(msg)) == 0);
  lua_close(L);
}

static void test_the_state_ceiling_holds_across_tasks(void) {
  lua_State *L = new_state(48);
  if (!L)
    return;
  char msg[256];
  /* each task keeps 14 MB alive in a global (and LuaJIT keeps its 14 MB build buffer): the third
   * takes the state past 48 MB, though each stays within its share */
  const char *keep = "kept = kept or {} kept[#kept + 1] = string.rep('k', 14 * 2^20 - #kept - 1)";
  LH_CHECK(run(L, keep, 32, msg, sizeof(msg)) == 0);
  LH_CHECK(run(L, keep, 32, msg, sizeof(msg)) == 0);
  LH_CHECK(run(L, keep, 32, msg, sizeof(msg)) != 0);
  LH_CHECK(mem.exceeded);
  LH_CHECK(mem.used <= mem.state_limit);
  /* outside a task nothing is refused: the host's own pushes never fail */
  lua_pushlstring(L, "x", 1);
  lua_pop(L, 1);
  lua_close(L);
}

static void test_c_functions_stop_at_the_deadline(void) {
  /* the longest hook interval the configuration allows: a loop of large C calls runs millions of
   * calls between two hooks, the C functions themselves must notice the deadline */
  lua_State *L = new_state_hooked(1024, 10000000);
  if (!L)
    return;
  char msg[256];
  static const char *const loops[] = {
      "while true do local s = string.rep('x', 2^24) end", /* the same string: no allocation */
      "local s = string.rep('x', 2^24) while true do local u = s:upper() end",
      "local s = string.rep('x', 2^24) while true do local i = s:find('y', 1, true) end",
      "local t = {} for i = 1, 2^16 do t[i] = 'x' end while true do local c = table.concat(t) end",
  };
  for (size_t i = 0; i < LH_ARRAY_SIZE(loops); i++) {
    unsigned long long t0 = lh_now_ns();
    LH_CHECK(run(L, loops[i], 512, msg, sizeof(msg)) != 0);
    LH_CHECK(budget.exceeded);
    LH_CHECK(!mem.exceeded);
    LH_CHECK(strstr(msg, "script_budget_exceeded") != NULL);
    LH_CHECK(lh_now_ns() - t0 < 2000000000ULL * lh_test_time_scale());
  }
  lua_close(L);
}

static void test_pattern_guard_holds_for_short_subjects(void) {
  lua_State *L = new_state(256);
  if (!L)
    return;
  char msg[256];
  unsigned long long t0 = lh_now_ns();
  LH_CHECK(run(L, "string.rep('a', 64):find(string.rep('a-', 12) .. 'b')", 16, msg, sizeof(msg)) !=
           0);
  LH_CHECK(strstr(msg, "too expensive") != NULL);
  LH_CHECK(run(L, "string.rep('a', 20):find(string.rep('.-', 12) .. 'b')", 16, msg, sizeof(msg)) !=
           0);
  LH_CHECK(lh_now_ns() - t0 < 1000000000ULL * lh_test_time_scale());
  /* linear and short-chain patterns on short subjects still run */
  LH_CHECK(run(L,
               "assert(('  x  '):match('^%s*(.-)%s*$') == 'x')"
               " assert(('abc123'):match('%d+') == '123')"
               " assert((string.rep('a', 60) .. 'b'):find('a-b') == 1)"
               " assert(('k=v'):gsub('(%w+)=(%w+)', '%2=%1') == 'v=k')",
               16, msg, sizeof(msg)) == 0);
  LH_CHECK_STR(msg, "");
  /* the wrappers keep the functions' names in argument errors */
  LH_CHECK(run(L, "string.rep()", 16, msg, sizeof(msg)) != 0);
  LH_CHECK(strstr(msg, "bad argument #1 to 'rep'") != NULL);
  LH_CHECK(run(L, "('x'):find({})", 16, msg, sizeof(msg)) != 0);
  LH_CHECK(strstr(msg, "bad argument #2 to 'find'") != NULL);
  lua_close(L);
}

int main(void) {
  LH_RUN(test_a_task_past_its_share_fails_and_the_state_carries_on);
  LH_RUN(test_the_state_ceiling_holds_across_tasks);
  LH_RUN(test_c_functions_stop_at_the_deadline);
  LH_RUN(test_pattern_guard_holds_for_short_subjects);
  return lh_test_done();
}
