/* test_lua_api.c: docs/lua-api.md cannot drift from what scripts can call. The test opens every
 * module of the registry that scripts may require (the real luaopen functions and embedded Lua
 * modules), lists each function it exports (and the methods of a luahost.mongo collection), and
 * fails for any that has no "### name" entry in the document. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lh_test.h"
#include "register.h"

static char *doc;

static void load_doc(void) {
  FILE *f = fopen(LH_SOURCE_DIR "/docs/lua-api.md", "rb");
  LH_CHECK(f != NULL);
  if (!f)
    return;
  doc = calloc(1, 1 << 20);
  size_t n = fread(doc, 1, (1 << 20) - 1, f);
  doc[n] = '\0';
  fclose(f);
}

static int documented(const char *name) {
  char heading[300];
  snprintf(heading, sizeof(heading), "\n### %s\n", name);
  return doc && strstr(doc, heading) != NULL;
}

static int missing, checked;

static void check_name(const char *name) {
  checked++;
  if (!documented(name)) {
    fprintf(stderr, "  docs/lua-api.md has no entry \"### %s\"\n", name);
    missing++;
  }
}

/* Checks every function in the table at the top of L's stack, named prefix.key. */
static void check_table(lua_State *L, const char *prefix, const char *sep) {
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_isfunction(L, -1)) {
      char name[256];
      snprintf(name, sizeof(name), "%s%s%s", prefix, sep, lua_tostring(L, -2));
      check_name(name);
    }
    lua_pop(L, 1);
  }
}

static void test_every_exported_function_is_documented(void) {
  load_doc();
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  char err[256];
  LH_CHECK_INT(lh_modules_preload(L, err, sizeof(err)), 0);
  for (const lh_module_t *const *m = lh_modules_list(); *m; m++) {
    if (!((*m)->flags & LH_MODULE_SCRIPTS))
      continue;
    lua_getglobal(L, "require");
    lua_pushstring(L, (*m)->name);
    if (lua_pcall(L, 1, 1, 0) != 0) {
      fprintf(stderr, "  require %s: %s\n", (*m)->name, lua_tostring(L, -1));
      LH_CHECK(0);
      lua_pop(L, 1);
      continue;
    }
    LH_CHECK(lua_istable(L, -1));
    check_table(L, (*m)->name, ".");
    lua_pop(L, 1);
  }
  /* A collection's methods, as scripts call them: coll:find(...). */
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luahost.mongo");
  LH_CHECK_INT(lua_pcall(L, 1, 1, 0), 0);
  lua_getfield(L, -1, "collection");
  lua_pushliteral(L, "t");
  LH_CHECK_INT(lua_pcall(L, 1, 1, 0), 0);
  luaL_getmetafield(L, -1, "__index");
  LH_CHECK(lua_istable(L, -1));
  if (lua_istable(L, -1))
    check_table(L, "collection", ":");
  lua_close(L);
  LH_CHECK(checked > 30); /* the enumeration found the modules at all */
  LH_CHECK_INT(missing, 0);
  free(doc);
}

int main(void) {
  LH_RUN(test_every_exported_function_is_documented);
  return lh_test_done();
}
