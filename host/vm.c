/* vm.c: a worker's Lua state for one generation of scripts (see vm.h).
 *
 * Scripts run in LuaJIT's interpreter by default (ARCHITECTURE §1): LuaJIT does not run count
 * hooks inside compiled traces, so only with the JIT off can the budget hook stop `while true do
 * end`. The hook is installed once for the whole state (hooks are per VM in LuaJIT, not per
 * coroutine) and checks the deadline of the request running right now; between requests no
 * deadline is armed. */
#include "vm.h"

#include <ctype.h>
#include <dirent.h>
#include <stdint.h>
#include <math.h>
#include <errno.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "json.h"
#include "lh.h"
#include "log.h"
#include "ratelimit.h"
#include "register.h"
#include "response.h"
#include "scheduler.h"

#define LH_MAX_SCRIPT_FILES 1000
#define LH_MAX_SCRIPT_BYTES (1 << 20)
#define LH_MAX_SCRIPT_DEPTH 16

struct lh_vm_s {
  lua_State *L;
  const lh_config_t *cfg;
  uv_loop_t *loop;
  lh_cq_t *cq;
  lh_router_t *router;
  int run_ref;
  int start_ref;   /* runtime.start_runner(gen) */
  int command_ref; /* runtime.command_runner(gen) */
  int has_start_hooks;
  int routes_ref; /* the generation's route list, for names in logs */
  int nroutes;
  int busy;                       /* requests running or suspended on this state */
  unsigned long long deadline_ns; /* 0 when no script is running */
  int budget_exceeded;
  int hook_interval;
  char generation[17];
};

typedef struct {
  lh_task_t task;
  lh_vm_t *vm;
  lh_exchange_t *ex; /* NULL for a hook */
  lh_vm_hook_cb hook_cb;
  void *hook_ud;
  int co_ref;
  unsigned long long used_ns; /* script time spent so far by this request */
} lh_vtask_t;

static __thread lh_vm_t *running_vm;

extern const struct lh_embedded_s {
  const char *name, *chunkname, *src;
  size_t len;
} lh_embedded_modules[];

/* ---- the budget hook ---- */

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lh_vm_t *vm = running_vm;
  if (!vm || !vm->deadline_ns || lh_now_ns() < vm->deadline_ns)
    return;
  /* From now on every instruction fails, so a script that catches the error with pcall cannot keep
   * running: each enclosing frame fails in turn until the coroutine is dead. */
  vm->budget_exceeded = 1;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "script_budget_exceeded: the script ran longer than %d ms",
             vm->cfg->script_budget_ms);
}

static void arm(lh_vm_t *vm, unsigned long long budget_ns) {
  running_vm = vm;
  vm->budget_exceeded = 0;
  vm->deadline_ns = lh_now_ns() + budget_ns;
}

static void disarm(lh_vm_t *vm) {
  vm->deadline_ns = 0;
  if (vm->budget_exceeded)
    lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, vm->hook_interval);
  running_vm = NULL;
}

/* ---- the `luahost` and `luahost.log` modules ---- */

static int l_sleep(lua_State *L) {
  return lh_sched_sleep(L, luaL_checknumber(L, 1));
}

static int l_now(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  return 1;
}

static int l_monotonic_ms(lua_State *L) {
  lua_pushnumber(L, (double)lh_now_ns() / 1e6);
  return 1;
}

static int l_random_hex(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "between 1 and 64 bytes expected");
  unsigned char raw[64];
  char hex[129];
  randombytes_buf(raw, (size_t)n);
  sodium_bin2hex(hex, sizeof(hex), raw, (size_t)n);
  lua_pushstring(L, hex);
  return 1;
}

/* luahost.block(ms): a job that sleeps on the "test" pool (configured only by test_pool_threads),
 * so tests can prove over HTTP how pools queue, overflow and resume coroutines. */
typedef struct {
  lh_ljob_t lj;
  unsigned ms;
} lh_block_job_t;

static void block_work(lh_job_t *job) {
  lh_block_job_t *b = LH_CONTAINER_OF(job, lh_block_job_t, lj.job);
  uv_sleep(b->ms);
}

static int block_push(lh_ljob_t *lj, lua_State *co) {
  if (lj->job.cancelled) {
    lua_pushnil(co);
    lua_pushliteral(co, "unavailable");
    return 2;
  }
  lua_pushboolean(co, 1);
  return 1;
}

static void block_free(lh_ljob_t *lj) {
  free(LH_CONTAINER_OF(lj, lh_block_job_t, lj));
}

static int l_block(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0 && ms <= 60000, 1, "milliseconds between 0 and 60000 expected");
  lh_block_job_t *b = calloc(1, sizeof(*b));
  if (!b)
    return luaL_error(L, "out of memory");
  b->ms = (unsigned)ms;
  b->lj.job.work = block_work;
  b->lj.push = block_push;
  b->lj.free = block_free;
  return lh_sched_await(L, "test", &b->lj);
}

static int l_generation(lua_State *L) {
  lh_vm_t *vm = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushstring(L, vm->generation);
  return 1;
}

static int readonly_newindex(lua_State *L) {
  return luaL_error(L, "luahost.config is read-only");
}

/* The non-secret settings scripts may read, as a read-only table (a proxy with __index). */
static void push_config(lua_State *L, const lh_config_t *c) {
  lua_newtable(L); /* proxy */
  lua_newtable(L); /* metatable */
  lua_newtable(L); /* values */
#define LH_CFG_STR(k) (lua_pushstring(L, c->k), lua_setfield(L, -2, #k))
#define LH_CFG_INT(k) (lua_pushinteger(L, c->k), lua_setfield(L, -2, #k))
  LH_CFG_STR(users_collection);
  LH_CFG_STR(db);
  LH_CFG_STR(password_scheme);
  LH_CFG_STR(admin_username);
  LH_CFG_STR(admin_password);
  LH_CFG_INT(admin_userage);
  LH_CFG_INT(token_ttl);
  LH_CFG_INT(login_max_per_pair);
  LH_CFG_INT(login_max_per_user);
  LH_CFG_INT(login_max_per_addr);
  LH_CFG_INT(login_window_s);
  LH_CFG_STR(throttle_store);
#undef LH_CFG_STR
#undef LH_CFG_INT
  lua_pushboolean(L, c->dev);
  lua_setfield(L, -2, "dev");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, readonly_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

static int open_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"sleep", l_sleep},
                                 {"now", l_now},
                                 {"monotonic_ms", l_monotonic_ms},
                                 {"form_decode", lh_json_l_form_decode},
                                 {"random_hex", l_random_hex},
                                 {"block", l_block},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lh_vm_t *vm = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushlightuserdata(L, vm);
  lua_pushcclosure(L, l_generation, 1);
  lua_setfield(L, -2, "generation");
  push_config(L, vm->cfg);
  lua_setfield(L, -2, "config");
  return 1;
}

static int log_at(lua_State *L, lh_log_level_t level) {
  if (level < lh_log_get_level())
    return 0;
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, ' ');
    size_t len;
    const char *s = lua_isstring(L, i) ? lua_tolstring(L, i, &len) : NULL;
    if (s)
      luaL_addlstring(&b, s, len);
    else
      luaL_addstring(&b, lua_isnil(L, i) ? "nil" : luaL_typename(L, i));
  }
  luaL_pushresult(&b);
  lh_log(level, "%s", lua_tostring(L, -1));
  return 0;
}

static int l_log_debug(lua_State *L) {
  return log_at(L, LH_LOG_DEBUG);
}
static int l_log_info(lua_State *L) {
  return log_at(L, LH_LOG_INFO);
}
static int l_log_warn(lua_State *L) {
  return log_at(L, LH_LOG_WARN);
}
static int l_log_error(lua_State *L) {
  return log_at(L, LH_LOG_ERROR);
}

static int open_log(lua_State *L) {
  static const luaL_Reg fns[] = {{"debug", l_log_debug},
                                 {"info", l_log_info},
                                 {"warn", l_log_warn},
                                 {"error", l_log_error},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  return 1;
}

/* ---- the pattern guard ----
 * Lua's pattern matcher runs in C, where the budget hook never fires, and it backtracks: on an
 * attacker-chosen subject, "a-a-a-b" takes hours and the worker with it. The work explodes when
 * adjacent quantified items can match the same characters: each one multiplies the tries by the
 * subject length, and an unanchored search adds one more factor. The guard parses the pattern
 * into items with their character sets, finds the longest chain of quantified items that can take
 * each other's characters (items in between that the chain can absorb do not break it), and
 * refuses a call whose worst case, len^(chain + unanchored), passes about 1e9 steps: a chain of 3
 * on 1 KB, of 2 on 31 KB. Linear patterns (^%s*(%S+)%s+(%S+)%s*$, %d+-%d+) always pass. */

#define LH_PATTERN_MAX_LOG10 9.0

typedef struct {
  uint64_t bits[4];
} lh_charset_t;

static void cs_set(lh_charset_t *cs, unsigned c) {
  cs->bits[c >> 6] |= 1ULL << (c & 63);
}

static int cs_overlap(const lh_charset_t *a, const lh_charset_t *b) {
  for (int i = 0; i < 4; i++)
    if (a->bits[i] & b->bits[i])
      return 1;
  return 0;
}

/* The sets of the class letters (%a, %d, ...), computed once: the guard runs on every pattern call
 * with a long subject, so it must cost a few table lookups, not 256 ctype calls per item. */
static lh_charset_t class_sets[26];
static uv_once_t class_sets_once = UV_ONCE_INIT;

static void class_sets_init(void) {
  for (unsigned c = 0; c < 256; c++) {
    int ci = (int)c;
    int in[26] = {0};
    in['a' - 'a'] = isalpha(ci) != 0;
    in['c' - 'a'] = iscntrl(ci) != 0;
    in['d' - 'a'] = isdigit(ci) != 0;
    in['g' - 'a'] = isgraph(ci) != 0;
    in['l' - 'a'] = islower(ci) != 0;
    in['p' - 'a'] = ispunct(ci) != 0;
    in['s' - 'a'] = isspace(ci) != 0;
    in['u' - 'a'] = isupper(ci) != 0;
    in['w' - 'a'] = isalnum(ci) != 0;
    in['x' - 'a'] = isxdigit(ci) != 0;
    for (int k = 0; k < 26; k++)
      if (in[k])
        cs_set(&class_sets[k], c);
  }
}

static void cs_class(lh_charset_t *cs, unsigned char cl) {
  static const char letters[] = "acdglpsuwx";
  unsigned char lower = (unsigned char)(cl | 0x20);
  if (lower >= 'a' && lower <= 'z' && memchr(letters, lower, sizeof(letters) - 1)) {
    uv_once(&class_sets_once, class_sets_init);
    const lh_charset_t *set = &class_sets[lower - 'a'];
    int complement = cl != lower; /* %A, %S, ...: upper case is the complement */
    for (int i = 0; i < 4; i++)
      cs->bits[i] |= complement ? ~set->bits[i] : set->bits[i];
  } else {
    cs_set(cs, cl); /* an escaped literal such as %. */
  }
}

/* Parses a set "[...]" starting after '['; returns the index of its closing ']'. */
static size_t parse_set(const char *p, size_t n, size_t i, lh_charset_t *cs) {
  int negate = 0;
  lh_charset_t in = {{0, 0, 0, 0}};
  if (i < n && p[i] == '^') {
    negate = 1;
    i++;
  }
  int first = 1;
  while (i < n && (p[i] != ']' || first)) {
    first = 0;
    if (p[i] == '%' && i + 1 < n) {
      cs_class(&in, (unsigned char)p[i + 1]);
      i += 2;
    } else if (i + 2 < n && p[i + 1] == '-' && p[i + 2] != ']') {
      for (unsigned c = (unsigned char)p[i]; c <= (unsigned char)p[i + 2]; c++)
        cs_set(&in, c);
      i += 3;
    } else {
      cs_set(&in, (unsigned char)p[i]);
      i++;
    }
  }
  for (int k = 0; k < 4; k++)
    cs->bits[k] = negate ? ~in.bits[k] : in.bits[k];
  return i;
}

/* The longest chain of mutually absorbing quantified items (see above). */
static int pattern_chain(const char *p, size_t n) {
  int chain = 0, longest = 0, have_prev = 0, linked = 0;
  lh_charset_t prev = {{0, 0, 0, 0}};
  for (size_t i = (n && p[0] == '^') ? 1 : 0; i < n; i++) {
    lh_charset_t cs = {{0, 0, 0, 0}};
    char c = p[i];
    int quantifiable = 1;
    if (c == '(' || c == ')' || (c == '$' && i + 1 == n))
      continue;
    if (c == '%' && i + 1 < n) {
      char d = p[i + 1];
      if (d == 'b') {
        i += 3; /* %bxy: a balanced run, anything inside */
        memset(&cs, 0xff, sizeof(cs));
        quantifiable = 0;
      } else if (d == 'f') {
        i += 2; /* %f[set]: a frontier, zero width */
        if (i < n && p[i] == '[')
          i = parse_set(p, n, i + 1, &cs);
        continue;
      } else if (d >= '0' && d <= '9') {
        i += 1; /* a back-reference: anything */
        memset(&cs, 0xff, sizeof(cs));
        quantifiable = 0;
      } else {
        cs_class(&cs, (unsigned char)d);
        i += 1;
      }
    } else if (c == '[') {
      i = parse_set(p, n, i + 1, &cs);
    } else if (c == '.') {
      memset(&cs, 0xff, sizeof(cs));
    } else {
      cs_set(&cs, (unsigned char)c);
    }
    char q = (quantifiable && i + 1 < n) ? p[i + 1] : 0;
    if (q == '*' || q == '+' || q == '-') {
      i++;
      chain = (have_prev && linked && cs_overlap(&prev, &cs)) ? chain + 1 : 1;
      if (chain > longest)
        longest = chain;
      prev = cs;
      have_prev = linked = 1;
    } else if (q == '?') {
      i++; /* optional: it neither extends nor breaks a chain */
    } else if (have_prev && !cs_overlap(&prev, &cs)) {
      linked = 0; /* a required character the chain cannot take: backtracking stops here */
    }
  }
  return longest;
}

static int guarded_pattern_call(lua_State *L) {
  int nargs = lua_gettop(L);
  size_t n, pn;
  luaL_checklstring(L, 1, &n);
  const char *pat = luaL_checklstring(L, 2, &pn);
  int plain = lua_toboolean(L, lua_upvalueindex(2)) && nargs >= 4 && lua_toboolean(L, 4);
  if (!plain && n > 64) {
    int chain = pattern_chain(pat, pn);
    int e = chain + (pn > 0 && pat[0] == '^' ? 0 : 1);
    if (chain >= 1 && e >= 2 && (double)e * log10((double)n) > LH_PATTERN_MAX_LOG10)
      return luaL_error(L,
                        "pattern '%.40s' is too expensive for a subject of %d bytes (%d "
                        "overlapping quantified items): match a shorter string or use plain "
                        "find",
                        pat, (int)n, chain);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

/* Replaces the pattern functions of the state's string library (shared by every string's methods)
 * with guarded ones. Runs before any module is loaded. */
static void guard_patterns(lua_State *L) {
  static const char *const names[] = {"find", "match", "gmatch", "gsub"};
  lua_getglobal(L, "string");
  for (size_t i = 0; i < LH_ARRAY_SIZE(names); i++) {
    lua_getfield(L, -1, names[i]);
    lua_pushboolean(L, i == 0); /* only find has a `plain` argument */
    lua_pushcclosure(L, guarded_pattern_call, 2);
    lua_setfield(L, -2, names[i]);
  }
  lua_pop(L, 1);
}

static void preload(lua_State *L, const char *name, lua_CFunction fn) {
  lua_getfield(L, LUA_GLOBALSINDEX, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, fn);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

static int preload_embedded(lua_State *L, char *err, size_t errlen) {
  lua_getfield(L, LUA_GLOBALSINDEX, "package");
  lua_getfield(L, -1, "preload");
  for (const struct lh_embedded_s *m = lh_embedded_modules; m->name; m++) {
    if (luaL_loadbuffer(L, m->src, m->len, m->chunkname) != 0) {
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
      lua_pop(L, 3);
      return LH_EINVAL;
    }
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 2);
  return 0;
}

/* ---- reading the scripts directory ---- */

typedef struct {
  char *path; /* relative to the scripts directory */
  char *src;
  size_t len;
} lh_script_file_t;

typedef struct {
  lh_script_file_t *files;
  size_t n, cap;
} lh_script_set_t;

static void script_set_free(lh_script_set_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    free(s->files[i].path);
    free(s->files[i].src);
  }
  free(s->files);
}

static int read_file(const char *full, char **out, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(full, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", full, strerror(errno));
    return LH_EIO;
  }
  char *buf = malloc(LH_MAX_SCRIPT_BYTES + 1);
  size_t n = buf ? fread(buf, 1, LH_MAX_SCRIPT_BYTES + 1, f) : 0;
  int failed = ferror(f);
  fclose(f);
  if (!buf) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  if (failed || n > LH_MAX_SCRIPT_BYTES) {
    free(buf);
    snprintf(err, errlen, "%s: %s", full, failed ? "read error" : "larger than 1 MiB");
    return LH_EIO;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int scan_dir(lh_script_set_t *set, const char *root, const char *rel, int depth, char *err,
                    size_t errlen) {
  char dir[2048];
  snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "scripts directory %s: %s", dir, strerror(errno));
    return LH_EIO;
  }
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue; /* hidden files, editor swap files, "." and ".." */
    char relpath[1024], full[3072];
    snprintf(relpath, sizeof(relpath), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
    snprintf(full, sizeof(full), "%s/%s", root, relpath);
    struct stat st;
    if (stat(full, &st) != 0)
      continue; /* vanished while we read: the next reload sees the final state */
    if (S_ISDIR(st.st_mode)) {
      if (depth >= LH_MAX_SCRIPT_DEPTH) {
        snprintf(err, errlen, "%s: directories nested too deep", full);
        rc = LH_ELIMIT;
      } else {
        rc = scan_dir(set, root, relpath, depth + 1, err, errlen);
      }
      continue;
    }
    size_t nl = strlen(e->d_name);
    if (!S_ISREG(st.st_mode) || nl < 5 || strcmp(e->d_name + nl - 4, ".lua") != 0)
      continue;
    if (set->n == LH_MAX_SCRIPT_FILES) {
      snprintf(err, errlen, "%s: more than %d script files", root, LH_MAX_SCRIPT_FILES);
      rc = LH_ELIMIT;
      break;
    }
    if (set->n == set->cap) {
      size_t cap = set->cap ? set->cap * 2 : 16;
      lh_script_file_t *f = realloc(set->files, cap * sizeof(*f));
      if (!f) {
        rc = LH_ENOMEM;
        break;
      }
      set->files = f;
      set->cap = cap;
    }
    lh_script_file_t *sf = &set->files[set->n];
    rc = read_file(full, &sf->src, &sf->len, err, errlen);
    if (rc == 0) {
      sf->path = strdup(relpath);
      if (!sf->path) {
        free(sf->src);
        rc = LH_ENOMEM;
      } else {
        set->n++;
      }
    }
  }
  closedir(d);
  return rc;
}

static int cmp_files(const void *a, const void *b) {
  return strcmp(((const lh_script_file_t *)a)->path, ((const lh_script_file_t *)b)->path);
}

/* The generation id is a hash of every path and content: two hosts with the same scripts report
 * the same id. */
static void generation_id(const lh_script_set_t *set, char out[17]) {
  crypto_generichash_state st;
  unsigned char h[8];
  crypto_generichash_init(&st, NULL, 0, sizeof(h));
  for (size_t i = 0; i < set->n; i++) {
    crypto_generichash_update(&st, (const unsigned char *)set->files[i].path,
                              strlen(set->files[i].path) + 1);
    crypto_generichash_update(&st, (const unsigned char *)set->files[i].src, set->files[i].len);
  }
  crypto_generichash_final(&st, h, sizeof(h));
  sodium_bin2hex(out, 17, h, sizeof(h));
}

/* ---- building the state ---- */

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
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
  /* Loading runs script code (module bodies): the budget applies there too. */
  arm(vm, (unsigned long long)vm->cfg->script_budget_ms * 1000000ULL);
  int rc = lua_pcall(L, 4, 1, base + 1);
  disarm(vm);
  if (rc != 0)
    goto fail;
  /* base+1 traceback, base+2 loader, base+3 generation */
  lua_getfield(L, -1, "routes");
  int nroutes = (int)lua_objlen(L, -1);
  for (int i = 1; i <= nroutes; i++) {
    lua_rawgeti(L, -1, i);
    lua_getfield(L, -1, "method");
    lua_getfield(L, -2, "path");
    lua_getfield(L, -3, "where");
    const char *method = lua_tostring(L, -3), *path = lua_tostring(L, -2);
    const char *where = lua_tostring(L, -1);
    char rerr[256];
    int m = lh_method_parse(method, strlen(method));
    int arc =
        m < 0 ? LH_EINVAL : lh_router_add(vm->router, (lh_method_t)m, path, i, rerr, sizeof(rerr));
    if (arc != 0) {
      snprintf(err, errlen, "%s: %s %s: %s", where, method, path, m < 0 ? "unknown method" : rerr);
      lua_settop(L, base);
      return LH_EINVAL;
    }
    lua_pop(L, 4);
  }
  vm->nroutes = nroutes;
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
  lua_getfield(L, base + 3, "on_start");
  vm->has_start_hooks = lua_objlen(L, -1) > 0;
  lua_settop(L, base);
  return 0;
fail:
  snprintf(err, errlen, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "unknown error");
  lua_settop(L, base);
  return LH_EINVAL;
}

int lh_vm_create(lh_vm_t **out, const lh_config_t *cfg, uv_loop_t *loop, lh_cq_t *cq, char *err,
                 size_t errlen) {
  *out = NULL;
  lh_vm_t *vm = calloc(1, sizeof(*vm));
  if (!vm) {
    snprintf(err, errlen, "out of memory");
    return LH_ENOMEM;
  }
  vm->cfg = cfg;
  vm->loop = loop;
  vm->cq = cq;
  vm->run_ref = vm->routes_ref = vm->start_ref = vm->command_ref = LUA_NOREF;
  vm->hook_interval = cfg->hook_interval > 0 ? cfg->hook_interval : 10000;
  lh_script_set_t set = {0};
  int rc = lh_router_create(&vm->router);
  if (rc == 0)
    rc = scan_dir(&set, cfg->scripts, "", 0, err, errlen);
  if (rc == 0) {
    qsort(set.files, set.n, sizeof(*set.files), cmp_files);
    generation_id(&set, vm->generation);
    vm->L = luaL_newstate();
    if (!vm->L) {
      snprintf(err, errlen, "cannot create a Lua state");
      rc = LH_ENOMEM;
    }
  }
  if (rc == 0) {
    lua_State *L = vm->L;
    luaL_openlibs(L);
    guard_patterns(L);
    if (!cfg->jit)
      luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, vm->hook_interval);
    lua_getfield(L, LUA_GLOBALSINDEX, "package");
    lua_getfield(L, -1, "preload");
    lua_pushlightuserdata(L, vm);
    lua_pushcclosure(L, open_core, 1);
    lua_setfield(L, -2, "luahost");
    lua_pop(L, 2);
    preload(L, "luahost.log", open_log);
    preload(L, "luahost.json", luaopen_luahost_json);
    preload(L, "luahost.ratelimit", luaopen_luahost_ratelimit);
    lh_bindings_preload(L);
    rc = preload_embedded(L, err, errlen);
  }
  if (rc == 0)
    rc = load_generation(vm, &set, err, errlen);
  script_set_free(&set);
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
  free(vm);
}

int lh_vm_busy(const lh_vm_t *vm) {
  return vm->busy;
}

const lh_router_t *lh_vm_router(const lh_vm_t *vm) {
  return vm->router;
}

const char *lh_vm_generation(const lh_vm_t *vm) {
  return vm->generation;
}

/* ---- running a request ---- */

/* Path parameters arrive percent-encoded; an invalid escape is kept as it is. */
static void push_decoded(lua_State *L, const char *s, size_t n) {
  if (!memchr(s, '%', n)) {
    lua_pushlstring(L, s, n);
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n && (hi = lh_hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = lh_hexval((unsigned char)s[i + 2])) >= 0 && (hi || lo)) {
      luaL_addchar(&b, (char)(hi * 16 + lo));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

static void push_request(lua_State *co, const lh_exchange_t *ex) {
  const lh_request_t *req = ex->req;
  lua_createtable(co, 0, 12);
  lua_pushstring(co, req->method);
  lua_setfield(co, -2, "method");
  lua_pushlstring(co, req->path, req->path_len);
  lua_setfield(co, -2, "path");
  lua_createtable(co, 0, ex->match.nparams);
  for (int i = 0; i < ex->match.nparams; i++) {
    const lh_route_param_t *p = &ex->match.params[i];
    lua_pushlstring(co, p->name, p->name_len);
    push_decoded(co, req->path + p->off, p->len);
    lua_rawset(co, -3);
  }
  lua_setfield(co, -2, "params");
  if (req->query) {
    lua_pushlstring(co, req->query, req->query_len);
    lua_setfield(co, -2, "query_string");
  }
  lua_createtable(co, 0, (int)req->nheaders);
  for (size_t i = 0; i < req->nheaders; i++) {
    const lh_header_t *h = &req->headers[i];
    lua_pushlstring(co, h->name, h->name_len);
    lua_rawget(co, -2);
    int repeated = !lua_isnil(co, -1);
    lua_pop(co, 1);
    lua_pushlstring(co, h->name, h->name_len);
    if (repeated) {
      /* Repeated fields are joined with ", " as HTTP allows for list-valued headers. */
      lua_pushlstring(co, h->name, h->name_len);
      lua_rawget(co, -3);
      lua_pushliteral(co, ", ");
      lua_pushlstring(co, h->value, h->value_len);
      lua_concat(co, 3);
    } else {
      lua_pushlstring(co, h->value, h->value_len);
    }
    lua_rawset(co, -3);
  }
  lua_setfield(co, -2, "headers");
  if (req->body) {
    lua_pushlstring(co, req->body, req->body_len);
    lua_setfield(co, -2, "raw_body");
  }
  lua_pushstring(co, ex->client_addr ? ex->client_addr : "");
  lua_setfield(co, -2, "client");
  lua_pushstring(co, ex->request_id ? ex->request_id : "");
  lua_setfield(co, -2, "id");
}

static void set_error(lh_exchange_t *ex, int status, const char *message, const char *code) {
  ex->status = status;
  lh_buf_reset(&ex->body);
  lh_buf_reset(&ex->headers);
  ex->content_type[0] = '\0';
  lh_envelope_error(&ex->body, message, code);
  if (status == 503)
    lh_buf_puts(&ex->headers, "Retry-After: 1\r\n");
}

static const char *route_name(lh_vm_t *vm, int id, lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, vm->routes_ref);
  lua_rawgeti(L, -1, id);
  lua_getfield(L, -1, "name");
  const char *name = lua_tostring(L, -1);
  lua_pop(L, 3); /* the string stays alive in the route table */
  return name ? name : "?";
}

static int header_forbidden(const char *name, size_t n) {
  static const char *const names[] = {
      "content-length", "connection",   "transfer-encoding",     "date",
      "server",         "x-request-id", "x-content-type-options"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(names); i++)
    if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
      return 1;
  return 0;
}

/* Turns the handler's `status, body, headers` on co's stack into the response. */
static int collect_response(lh_vtask_t *vt, char *why, size_t whylen) {
  lua_State *co = vt->task.co;
  lh_exchange_t *ex = vt->ex;
  int n = lua_gettop(co);
  if (n < 1 || lua_type(co, 1) != LUA_TNUMBER) {
    snprintf(why, whylen, "the handler returned no status");
    return LH_EINVAL;
  }
  lua_Number st = lua_tonumber(co, 1);
  if (st != (int)st || st < 200 || st > 599) {
    snprintf(why, whylen, "the handler returned an invalid status %g", (double)st);
    return LH_EINVAL;
  }
  ex->status = (int)st;
  if (n >= 3 && lua_istable(co, 3)) {
    lua_pushnil(co);
    while (lua_next(co, 3)) {
      if (lua_type(co, -2) != LUA_TSTRING ||
          (lua_type(co, -1) != LUA_TSTRING && lua_type(co, -1) != LUA_TNUMBER)) {
        snprintf(why, whylen, "response headers must map names to strings");
        lua_pop(co, 2);
        return LH_EINVAL;
      }
      size_t nl, vl;
      const char *name = lua_tolstring(co, -2, &nl);
      lua_pushvalue(co, -1);
      const char *value = lua_tolstring(co, -1, &vl);
      if (!lh_header_is_valid(name, nl, value, vl) || header_forbidden(name, nl)) {
        snprintf(why, whylen, "invalid or host-managed response header '%.64s'", name);
        lua_pop(co, 3);
        return LH_EINVAL;
      }
      if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) {
        if (vl >= sizeof(ex->content_type)) {
          snprintf(why, whylen, "Content-Type too long");
          lua_pop(co, 3);
          return LH_EINVAL;
        }
        memcpy(ex->content_type, value, vl + 1);
      } else {
        lh_buf_append(&ex->headers, name, nl);
        lh_buf_puts(&ex->headers, ": ");
        lh_buf_append(&ex->headers, value, vl);
        lh_buf_puts(&ex->headers, "\r\n");
      }
      lua_pop(co, 2);
    }
  } else if (n >= 3 && !lua_isnil(co, 3)) {
    snprintf(why, whylen, "response headers must be a table");
    return LH_EINVAL;
  }
  if (n >= 2 && lua_type(co, 2) == LUA_TSTRING) {
    size_t bl;
    const char *b = lua_tolstring(co, 2, &bl);
    lh_buf_append(&ex->body, b, bl);
    if (!ex->content_type[0])
      snprintf(ex->content_type, sizeof(ex->content_type), "text/plain; charset=utf-8");
  } else if (n >= 2 && !lua_isnil(co, 2)) {
    if (lh_json_encode(co, 2, &ex->body, why, whylen) != 0)
      return LH_EINVAL;
  }
  if (ex->body.failed || ex->headers.failed) {
    snprintf(why, whylen, "out of memory");
    return LH_ENOMEM;
  }
  return 0;
}

static void finish(lh_vtask_t *vt) {
  lh_vm_t *vm = vt->vm;
  lh_exchange_t *ex = vt->ex;
  luaL_unref(vm->L, LUA_REGISTRYINDEX, vt->co_ref);
  free(vt);
  vm->busy--;
  ex->done(ex);
}

static void finish_hook(lh_vtask_t *vt, int rc, int exceeded) {
  lh_vm_t *vm = vt->vm;
  lua_State *co = vt->task.co;
  int ok = 0;
  const char *text;
  if (rc == 0) {
    ok = lua_toboolean(co, 1);
    text = lua_tostring(co, 2);
  } else if (exceeded) {
    text = "script_budget_exceeded";
  } else if (rc == LUA_YIELD) {
    text = "the hook yielded outside a host function";
  } else {
    text = lua_tostring(co, -1);
  }
  /* The text lives on the coroutine's stack: call back before releasing it. */
  vt->hook_cb(vt->hook_ud, ok, text ? text : "");
  luaL_unref(vm->L, LUA_REGISTRYINDEX, vt->co_ref);
  free(vt);
  vm->busy--;
}

static void resume_task(lh_task_t *t, int nargs) {
  lh_vtask_t *vt = LH_CONTAINER_OF(t, lh_vtask_t, task);
  lh_vm_t *vm = vt->vm;
  lh_exchange_t *ex = vt->ex;
  unsigned long long budget = (unsigned long long)vm->cfg->script_budget_ms * 1000000ULL;
  unsigned long long start = lh_now_ns();
  arm(vm, budget > vt->used_ns ? budget - vt->used_ns : 0);
  lh_sched_set_current(t);
  int rc = lua_resume(t->co, nargs);
  lh_sched_set_current(NULL);
  int exceeded = vm->budget_exceeded;
  disarm(vm);
  vt->used_ns += lh_now_ns() - start;

  if (rc == LUA_YIELD && t->suspended)
    return; /* waiting for a job or a timer; resume_task runs again when it is done */
  if (!ex) {
    finish_hook(vt, rc, exceeded);
    return;
  }
  lh_buf_reset(&ex->body);
  lh_buf_reset(&ex->headers);
  ex->content_type[0] = '\0';
  char why[2048];
  if (rc == 0) {
    if (collect_response(vt, why, sizeof(why)) == 0) {
      finish(vt);
      return;
    }
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
  lh_error("route %s: %s%s (request %s)", route_name(vm, ex->match.route_id, vm->L),
           rc == 0 ? "bad response: " : "", why, ex->request_id);
  if (exceeded)
    set_error(ex, 500, "The script ran too long", "script_budget_exceeded");
  else
    set_error(ex, 500, "Internal server error", "internal_error");
  finish(vt);
}

/* A new coroutine on vm, anchored in the registry until the task finishes. */
static lh_vtask_t *new_task(lh_vm_t *vm) {
  lh_vtask_t *vt = calloc(1, sizeof(*vt));
  if (!vt)
    return NULL;
  vt->vm = vm;
  vt->task.loop = vm->loop;
  vt->task.cq = vm->cq;
  vt->task.resume = resume_task;
  vt->task.co = lua_newthread(vm->L);
  vt->co_ref = luaL_ref(vm->L, LUA_REGISTRYINDEX);
  vm->busy++;
  return vt;
}

void lh_vm_dispatch(lh_vm_t *vm, lh_exchange_t *ex) {
  lh_vtask_t *vt = new_task(vm);
  if (!vt) {
    set_error(ex, 503, "The server is out of memory", "overloaded");
    ex->done(ex);
    return;
  }
  vt->ex = ex;
  lua_State *co = vt->task.co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, vm->run_ref);
  lua_pushinteger(co, ex->match.route_id);
  push_request(co, ex);
  resume_task(&vt->task, 2);
}

int lh_vm_has_start_hooks(const lh_vm_t *vm) {
  return vm->has_start_hooks;
}

void lh_vm_run_hook(lh_vm_t *vm, const char *command, int argc, char **argv, lh_vm_hook_cb cb,
                    void *ud) {
  lh_vtask_t *vt = new_task(vm);
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
  resume_task(&vt->task, nargs);
}
