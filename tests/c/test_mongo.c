/* test_mongo.c: the parts of luahost.mongo that run without the scheduler: error classification,
 * update and filter validation, start-up with the server down, and (when LH_TEST_MONGODB_URI is
 * set) the pool-thread operations against a real server: insert, duplicate key on insert and on
 * update, find, count, update, find_one_and_update, delete, and the latency of find_one.
 * Run it against both test servers, e.g.
 *   LH_TEST_MONGODB_URI=$(scripts/db start ferretdb 27501 /tmp/f) build/test_mongo */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "jobs.h"
#include "lh.h"
#include "lh_test.h"
#include "log.h"
#include "mongo.h"
#include "scheduler.h"

static void set_err(bson_error_t *e, uint32_t domain, uint32_t code, const char *msg) {
  memset(e, 0, sizeof *e);
  e->domain = domain;
  e->code = code;
  snprintf(e->message, sizeof e->message, "%s", msg);
}

static void test_classify(void) {
  bson_error_t e;
  set_err(&e, MONGOC_ERROR_SERVER, 11000, "E11000 duplicate key error");
  LH_CHECK_STR(lh_mongo_classify(&e), "duplicate_key");
  set_err(&e, MONGOC_ERROR_WRITE_CONCERN, 11001, "dup");
  LH_CHECK_STR(lh_mongo_classify(&e), "duplicate_key");
  set_err(&e, MONGOC_ERROR_SERVER, 50, "operation exceeded time limit");
  LH_CHECK_STR(lh_mongo_classify(&e), "timeout");
  set_err(&e, MONGOC_ERROR_SERVER, 262, "ExceededTimeLimit");
  LH_CHECK_STR(lh_mongo_classify(&e), "timeout");
  set_err(&e, MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_SOCKET,
          "Failed to read 4 bytes: socket error or timeout");
  LH_CHECK_STR(lh_mongo_classify(&e), "timeout");
  set_err(&e, MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT, "Failed to connect to target host");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_SERVER_SELECTION_FAILURE,
          "No suitable servers found");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_SERVER, 91, "shutdown in progress");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_COMMAND, MONGOC_ERROR_COMMAND_INVALID_ARG, "keys cannot begin with $");
  LH_CHECK_STR(lh_mongo_classify(&e), "bad_value");
  set_err(&e, MONGOC_ERROR_SERVER, 2, "BadValue");
  LH_CHECK_STR(lh_mongo_classify(&e), "bad_value");
  set_err(&e, MONGOC_ERROR_SERVER, 14, "TypeMismatch");
  LH_CHECK_STR(lh_mongo_classify(&e), "bad_value");
  set_err(&e, MONGOC_ERROR_SERVER, 238,
          "Index option \"expireAfterSeconds\" is not implemented yet");
  LH_CHECK_STR(lh_mongo_classify(&e), "unsupported");
  set_err(&e, MONGOC_ERROR_SERVER, 115, "CommandNotSupported");
  LH_CHECK_STR(lh_mongo_classify(&e), "unsupported");
  set_err(&e, MONGOC_ERROR_SERVER, 8000, "AtlasError");
  LH_CHECK_STR(lh_mongo_classify(&e), "error");
  /* driver domains never go through the server-code table */
  set_err(&e, MONGOC_ERROR_PROTOCOL, MONGOC_ERROR_PROTOCOL_INVALID_REPLY, "bad reply");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_WRITE_CONCERN, 64, "waiting for replication timed out");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_SERVER, 10058, "not master");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
  set_err(&e, MONGOC_ERROR_COMMAND, 14, "driver enum value, not TypeMismatch");
  LH_CHECK_STR(lh_mongo_classify(&e), "error");
  set_err(&e, MONGOC_ERROR_CLIENT, MONGOC_ERROR_CLIENT_AUTHENTICATE, "auth failed");
  LH_CHECK_STR(lh_mongo_classify(&e), "unavailable");
}

static int check_update_json(const char *json) {
  bson_error_t e;
  char err[256];
  bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
  if (b == NULL) {
    fprintf(stderr, "  bad test JSON %s: %s\n", json, e.message);
    return -100;
  }
  int rc = lh_mongo_check_update(b, err, sizeof err);
  bson_destroy(b);
  return rc;
}

static int check_filter_json(const char *json) {
  bson_error_t e;
  char err[256];
  bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
  if (b == NULL) {
    return -100;
  }
  int rc = lh_mongo_check_filter(b, err, sizeof err);
  bson_destroy(b);
  return rc;
}

static void test_check_update(void) {
  LH_CHECK_INT(check_update_json("{\"$set\": {\"a\": 1}}"), 0);
  LH_CHECK_INT(check_update_json("{\"$set\": {\"a\": 1}, \"$unset\": {\"b\": \"\"}, "
                                 "\"$inc\": {\"v\": 1}}"),
               0);
  LH_CHECK_INT(check_update_json("{}"), LH_EINVAL);
  LH_CHECK_INT(check_update_json("{\"a\": 1}"), LH_EINVAL); /* a replacement, not an update */
  LH_CHECK_INT(check_update_json("{\"$rename\": {\"a\": \"b\"}}"), LH_EINVAL);
  LH_CHECK_INT(check_update_json("{\"$set\": {}}"), LH_EINVAL);
  LH_CHECK_INT(check_update_json("{\"$set\": 1}"), LH_EINVAL);
  LH_CHECK_INT(check_update_json("{\"$set\": {\"$where\": 1}}"), LH_EINVAL);
  LH_CHECK_INT(check_update_json("{\"$inc\": {\"v\": \"1\"}}"), LH_EINVAL);
}

static void test_check_filter(void) {
  LH_CHECK_INT(check_filter_json("{}"), 0);
  LH_CHECK_INT(check_filter_json("{\"a\": {\"$gt\": 1}, \"$or\": [{\"b\": 1}, {\"c\": 2}]}"), 0);
  LH_CHECK_INT(check_filter_json("{\"$where\": \"sleep(1000)\"}"), LH_EINVAL);
  LH_CHECK_INT(check_filter_json("{\"$or\": [{\"$where\": \"1\"}]}"), LH_EINVAL);
  LH_CHECK_INT(check_filter_json("{\"$expr\": {\"$function\": {}}}"), LH_EINVAL);
}

static void fill_config(lh_config_t *cfg, const char *uri, int timeout_ms) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->mongodb_uri, sizeof cfg->mongodb_uri, "%s", uri);
  snprintf(cfg->db, sizeof cfg->db, "luahost_test");
  cfg->db_timeout_ms = timeout_ms;
}

/* Start-up succeeds with no server; operations then fail fast with "unavailable". */
static void test_server_down(void) {
  lh_config_t cfg;
  char err[256];
  fill_config(&cfg, "mongodb://127.0.0.1:1/", 300);
  LH_CHECK_INT(lh_mongo_init(&cfg, err, sizeof err), 0);
  lh_mongo_req_t req;
  lh_mongo_req_init(&req, LH_MONGO_PING, "");
  unsigned long long t0 = lh_now_ns();
  lh_mongo_execute(&req);
  double ms = (double)(lh_now_ns() - t0) / 1e6;
  LH_CHECK_STR(req.code, "unavailable");
  LH_CHECK(ms < 3000);
  lh_mongo_req_destroy(&req);
  lh_mongo_cleanup();
  fill_config(&cfg, "not-a-uri", 300);
  LH_CHECK_INT(lh_mongo_init(&cfg, err, sizeof err), LH_EINVAL);
  LH_CHECK(strstr(err, "mongodb_uri") != NULL);
  lh_mongo_cleanup();
}

/* ---- against a real server ----------------------------------------------------------------- */

static char g_coll[64];

/* Runs one operation whose inputs are given as relaxed extended JSON. */
/* filter: the operation's first document (the document to insert, the index keys, or the
 * filter). */
static void run(lh_mongo_req_t *req, lh_mongo_op_t op, const char *filter, const char *update) {
  bson_error_t e;
  lh_mongo_req_init(req, op, g_coll);
  if (filter) {
    bson_t *f = bson_new_from_json((const uint8_t *)filter, -1, &e);
    LH_CHECK(f != NULL);
    if (f) {
      bson_concat(op == LH_MONGO_INSERT_ONE     ? &req->document
                  : op == LH_MONGO_CREATE_INDEX ? &req->keys
                                                : &req->filter,
                  f);
      bson_destroy(f);
    }
  }
  if (update) {
    bson_t *u = bson_new_from_json((const uint8_t *)update, -1, &e);
    LH_CHECK(u != NULL);
    if (u) {
      bson_concat(&req->update, u);
      bson_destroy(u);
    }
  }
}

static void report(const char *what, const lh_mongo_req_t *req) {
  printf("  info: %s -> %s (domain %u, code %u): %s\n", what, req->code ? req->code : "ok",
         req->err_domain, req->err_code, req->message);
}

static void live_insert_and_duplicate(void) {
  lh_mongo_req_t req;
  run(&req, LH_MONGO_CREATE_INDEX, "{\"username_lc\": 1}", NULL);
  req.unique = 1;
  snprintf(req.index_name, sizeof req.index_name, "username_lc_1");
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  if (req.code) {
    report("create_index", &req);
  }
  lh_mongo_req_destroy(&req);

  const char *docs[] = {"{\"username_lc\": \"alice\", \"n\": 1}",
                        "{\"username_lc\": \"bob\", \"n\": 2}",
                        "{\"username_lc\": \"carol\", \"n\": 3}"};
  for (size_t i = 0; i < LH_ARRAY_SIZE(docs); i++) {
    run(&req, LH_MONGO_INSERT_ONE, docs[i], NULL);
    lh_mongo_execute(&req);
    LH_CHECK(req.code == NULL);
    lh_mongo_req_destroy(&req);
  }
  run(&req, LH_MONGO_INSERT_ONE, "{\"username_lc\": \"alice\", \"n\": 9}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK_STR(req.code, "duplicate_key");
  report("insert duplicate", &req);
  lh_mongo_req_destroy(&req);
}

static void live_find_and_count(void) {
  lh_mongo_req_t req;
  run(&req, LH_MONGO_FIND_ONE, "{\"username_lc\": \"bob\"}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL && req.found);
  bson_iter_t it;
  LH_CHECK(bson_iter_init_find(&it, &req.result, "n") && bson_iter_as_int64(&it) == 2);
  LH_CHECK(bson_iter_init_find(&it, &req.result, "_id") && BSON_ITER_HOLDS_OID(&it));
  lh_mongo_req_destroy(&req);

  run(&req, LH_MONGO_FIND_ONE, "{\"username_lc\": \"nobody\"}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL && !req.found);
  lh_mongo_req_destroy(&req);

  /* Sorted descending by n, skip one, at most one, without _id. */
  run(&req, LH_MONGO_FIND, "{}", NULL);
  BSON_APPEND_INT32(&req.sort, "n", -1);
  BSON_APPEND_INT32(&req.projection, "_id", 0);
  req.skip = 1;
  req.limit = 1;
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  LH_CHECK_INT(req.n1, 1);
  bson_iter_t doc;
  if (bson_iter_init_find(&it, &req.result, "0") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    LH_CHECK(bson_iter_recurse(&it, &doc) && bson_iter_find(&doc, "username_lc") &&
             strcmp(bson_iter_utf8(&doc, NULL), "bob") == 0);
    LH_CHECK(bson_iter_recurse(&it, &doc) && !bson_iter_find(&doc, "_id"));
  } else {
    LH_CHECK(!"find returned no document");
  }
  lh_mongo_req_destroy(&req);

  run(&req, LH_MONGO_COUNT, "{\"n\": {\"$gte\": 2}}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  LH_CHECK_INT(req.n1, 2);
  lh_mongo_req_destroy(&req);
}

static void live_update(void) {
  lh_mongo_req_t req;
  run(&req, LH_MONGO_UPDATE_ONE, "{\"username_lc\": \"bob\"}", "{\"$inc\": {\"n\": 10}}");
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  LH_CHECK_INT(req.n1, 1);
  LH_CHECK_INT(req.n2, 1);
  lh_mongo_req_destroy(&req);

  /* A unique violation on update, first without the hint: the server's own answer. */
  run(&req, LH_MONGO_UPDATE_ONE, "{\"username_lc\": \"bob\"}",
      "{\"$set\": {\"username_lc\": \"alice\"}}");
  lh_mongo_execute(&req);
  LH_CHECK(req.code != NULL);
  report("update_one duplicate, no unique_fields", &req);
  lh_mongo_req_destroy(&req);

  run(&req, LH_MONGO_UPDATE_ONE, "{\"username_lc\": \"bob\"}",
      "{\"$set\": {\"username_lc\": \"alice\"}}");
  snprintf(req.unique_fields[0], sizeof req.unique_fields[0], "username_lc");
  req.n_unique = 1;
  lh_mongo_execute(&req);
  LH_CHECK_STR(req.code, "duplicate_key");
  report("update_one duplicate, unique_fields", &req);
  lh_mongo_req_destroy(&req);

  run(&req, LH_MONGO_FIND_ONE_AND_UPDATE, "{\"username_lc\": \"carol\"}",
      "{\"$set\": {\"username_lc\": \"alice\"}}");
  snprintf(req.unique_fields[0], sizeof req.unique_fields[0], "username_lc");
  req.n_unique = 1;
  lh_mongo_execute(&req);
  LH_CHECK_STR(req.code, "duplicate_key");
  report("find_one_and_update duplicate, unique_fields", &req);
  lh_mongo_req_destroy(&req);

  /* Setting a unique field to its own current value is no conflict. */
  run(&req, LH_MONGO_FIND_ONE_AND_UPDATE, "{\"username_lc\": \"carol\"}",
      "{\"$set\": {\"username_lc\": \"carol\", \"n\": 30}}");
  snprintf(req.unique_fields[0], sizeof req.unique_fields[0], "username_lc");
  req.n_unique = 1;
  BSON_APPEND_INT32(&req.projection, "n", 1);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL && req.found);
  if (req.code || !req.found) {
    report("find_one_and_update to its own value", &req);
  }
  bson_iter_t it;
  LH_CHECK(bson_iter_init_find(&it, &req.result, "n") && bson_iter_as_int64(&it) == 30);
  LH_CHECK(!bson_iter_init_find(&it, &req.result, "username_lc"));
  lh_mongo_req_destroy(&req);

  run(&req, LH_MONGO_FIND_ONE_AND_UPDATE, "{\"username_lc\": \"nobody\"}",
      "{\"$set\": {\"n\": 1}}");
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL && !req.found);
  lh_mongo_req_destroy(&req);
}

static void live_delete_and_ping(void) {
  lh_mongo_req_t req;
  run(&req, LH_MONGO_DELETE_ONE, "{\"username_lc\": \"carol\"}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  LH_CHECK_INT(req.n1, 1);
  lh_mongo_req_destroy(&req);
  run(&req, LH_MONGO_DELETE_ONE, "{\"username_lc\": \"carol\"}", NULL);
  lh_mongo_execute(&req);
  LH_CHECK_INT(req.n1, 0);
  lh_mongo_req_destroy(&req);
  run(&req, LH_MONGO_PING, NULL, NULL);
  lh_mongo_execute(&req);
  LH_CHECK(req.code == NULL);
  lh_mongo_req_destroy(&req);
}

static void live_find_one_latency(void) {
  lh_mongo_req_t req;
  run(&req, LH_MONGO_FIND_ONE, "{\"username_lc\": \"alice\"}", NULL);
  lh_mongo_execute(&req);
  bson_iter_t it;
  bson_oid_t id;
  int have = req.found && bson_iter_init_find(&it, &req.result, "_id") && BSON_ITER_HOLDS_OID(&it);
  LH_CHECK(have);
  if (have) {
    bson_oid_copy(bson_iter_oid(&it), &id);
  }
  lh_mongo_req_destroy(&req);
  if (!have) {
    return;
  }
  const int n = 500;
  unsigned long long t0 = lh_now_ns();
  for (int i = 0; i < n; i++) {
    lh_mongo_req_init(&req, LH_MONGO_FIND_ONE, g_coll);
    BSON_APPEND_OID(&req.filter, "_id", &id);
    lh_mongo_execute(&req);
    LH_CHECK(req.found);
    lh_mongo_req_destroy(&req);
  }
  double us = (double)(lh_now_ns() - t0) / 1e3 / n;
  printf("  info: find_one by _id: %.0f us per call (%d calls, one pooled client)\n", us, n);
}

/* ---- the Lua API, through the real scheduler ----------------------------------------------- */

static int g_resumed, g_nargs;

static void on_resume(lh_task_t *task, int nargs) {
  g_resumed = 1;
  g_nargs = nargs;
}

static lua_State *lua_with_mongo(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaopen_luahost_mongo(L);
  lua_setglobal(L, "mongo");
  lua_pushstring(L, g_coll);
  lua_setglobal(L, "COLL");
  return L;
}

/* Argument checks that answer before any job is queued, and the refusal outside a request. */
static void test_lua_arguments(void) {
  lua_State *L = lua_with_mongo();
  const char *code =
      "local c = mongo.collection('users')\n"
      "assert(tostring(c) == 'luahost.mongo.collection(users)')\n"
      "assert(not pcall(mongo.collection, ''))\n"
      "assert(not pcall(mongo.collection, 'system.users'))\n"
      "local r, e = c:find({}, {limit = 0}) assert(r == nil and e == 'bad_value')\n"
      "r, e = c:find({}, {limit = -1}) assert(r == nil and e == 'bad_value')\n"
      "r, e = c:find({}, {skip = 1.5}) assert(r == nil and e == 'bad_value')\n"
      "assert(not pcall(c.find, c, {}, {limit = '5'}))\n"
      "assert(not pcall(c.find, c, {}, {bogus = 1}))\n"
      "assert(not pcall(c.find, c, {}, {sort = {{'a', 2}}}))\n"
      "assert(not pcall(c.find, c, 'x'))\n"
      "assert(not pcall(c.find_one, c, {[1] = 'x'}))\n"
      "r, e = c:find_one({['$where'] = 'true'}) assert(r == nil and e == 'bad_value')\n"
      "r, e = c:update_one({}, {['$rename'] = {a = 'b'}}) assert(r == nil and e == 'bad_value')\n"
      "r, e = c:update_one({}, {a = 1}) assert(r == nil and e == 'bad_value')\n"
      "assert(not pcall(c.update_one, c, {}, {['$set'] = {a = 1}}, {upsert = true}))\n"
      "assert(not pcall(c.insert_one, c, 'doc'))\n"
      "assert(not pcall(c.create_index, c, {{'a', 'up'}}))\n"
      "assert(not pcall(c.create_index, c, {{'a', 1}}, {expire_after_seconds = 0}))\n"
      "assert(not pcall(c.create_index, c, {{'a', 1}}, {expire_after_seconds = 1.5}))\n"
      "assert(not pcall(c.find_one_and_update, c, {}, {['$inc'] = {n = 1}}, {upsert = 1}))\n"
      "local ok, msg = pcall(c.count_documents, c, {})\n"
      "assert(not ok and msg:find('handling a request'))\n"
      "r, e = mongo.objectid('nothex') assert(r == nil and e == 'bad_value')\n"
      "return true\n";
  if (luaL_dostring(L, code) != 0) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(L, -1));
    LH_CHECK(0);
  }
  lua_close(L);
}

/* Runs `code` in a coroutine as a request would, driving the loop until it finishes. */
static int run_request(lua_State *L, uv_loop_t *loop, lh_cq_t *cq, const char *code) {
  lua_State *co = lua_newthread(L);
  static lh_sched_t sched;
  lh_sched_attach(L, &sched);
  lh_task_t task = {.co = co, .loop = loop, .cq = cq, .sched = &sched, .resume = on_resume};
  if (luaL_loadstring(co, code) != 0) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(co, -1));
    lua_pop(L, 1);
    return -1;
  }
  int nargs = 0, status;
  for (;;) {
    task.suspended = 0;
    lh_sched_enter(&sched, &task);
    status = lua_resume(co, nargs);
    lh_sched_leave(&sched);
    if (status != LUA_YIELD) {
      break;
    }
    g_resumed = 0;
    while (!g_resumed) {
      uv_run(loop, UV_RUN_ONCE);
    }
    nargs = g_nargs;
  }
  int ok = status == 0 && lua_toboolean(co, -1);
  if (!ok) {
    fprintf(stderr, "  lua: %s\n", lua_tostring(co, -1));
  }
  lua_pop(L, 1);
  return ok ? 0 : -1;
}

static void live_lua(void) {
  uv_loop_t loop;
  lh_cq_t *cq;
  lh_pool_t *pool;
  uv_loop_init(&loop);
  LH_CHECK_INT(lh_cq_create(&cq, &loop), 0);
  LH_CHECK_INT(lh_pool_create(&pool, "db", 2, 16), 0);
  LH_CHECK_INT(lh_pools_register(pool), 0);
  lua_State *L = lua_with_mongo();
  const char *code =
      "local c = mongo.collection(COLL)\n"
      "assert(c:create_index({{'username_lc', 1}}, {unique = true}) == true)\n"
      "local id = assert(c:insert_one({username_lc = 'dave', at = mongo.date(5), tags = {}}))\n"
      "assert(#tostring(id) == 24)\n"
      "local x, e = c:insert_one({username_lc = 'dave'}) assert(x == nil and e == "
      "'duplicate_key')\n"
      "local own = mongo.objectid()\n"
      "assert(c:insert_one({_id = own, username_lc = 'erin'}) == own)\n"
      "local d = assert(c:find_one({_id = id}))\n"
      "assert(d.username_lc == 'dave' and d._id == id and d.at:ms() == 5 and next(d.tags) == nil)\n"
      "local none, e2 = c:find_one({username_lc = 'zzz'}) assert(none == nil and e2 == nil)\n"
      "local n1 = #assert(c:find({username_lc = mongo.regex('^(dave|erin)$')}))\n"
      "local n2 = #assert(c:find({username_lc = {['$regex'] = '^(dave|erin)$'}}))\n"
      "local n3 = #assert(c:find({username_lc = {['$regex'] = 'AVE', ['$options'] = 'i'}}))\n"
      "local n4 = #assert(c:find({username_lc = {['$regex'] = mongo.regex('AVE', 'i')}}))\n"
      "print(('  info: regex matches: literal %d, $regex %d, $regex+$options %d, $regex literal "
      "%d')\n"
      "  :format(n1, n2, n3, n4))\n"
      "local list = assert(c:find({username_lc = {['$regex'] = '^(dave|erin)$'}},\n"
      "  {sort = {{'username_lc', -1}}, limit = 5000, projection = {username_lc = 1}}))\n"
      "assert(#list == 2, #list) assert(list[1].username_lc == 'erin', list[1].username_lc) "
      "assert(list[2]._id == id, tostring(list[2]._id))\n"
      "assert(c:count_documents({username_lc = 'dave'}) == 1)\n"
      "local m, mod = c:update_one({_id = id}, {['$set'] = {x = 1}}) assert(m == 1 and mod == 1)\n"
      "local nd = c:find_one_and_update({_id = id}, {['$inc'] = {x = 1}}, {projection = {x = 1}})\n"
      "assert(nd.x == 2 and nd.username_lc == nil and nd._id == id)\n"
      "x, e = c:update_one({_id = own}, {['$set'] = {username_lc = 'dave'}},\n"
      "  {unique_fields = {'username_lc'}}) assert(x == nil and e == 'duplicate_key')\n"
      "assert(c:delete_one({_id = id}) == 1 and c:delete_one({_id = own}) == 1)\n"
      "assert(mongo.ping() == true)\n"
      /* An upserting find_one_and_update is an atomic counter: created at 1, then counted. */
      "local ctr = mongo.collection(COLL .. '_ctr')\n"
      "local k = 'login:' .. tostring(mongo.objectid())\n"
      "local up = {['$inc'] = {n = 1}, ['$set'] = {exp = mongo.date(1000)}}\n"
      "local a = assert(ctr:find_one_and_update({_id = k}, up, {upsert = true}))\n"
      "assert(a._id == k and a.n == 1 and a.exp:ms() == 1000, tostring(a.n))\n"
      "local b = assert(ctr:find_one_and_update({_id = k}, up, {upsert = true}))\n"
      "assert(b.n == 2, tostring(b.n))\n"
      "local none2 = ctr:find_one_and_update({_id = k .. 'x'}, up, {upsert = false})\n"
      "assert(none2 == nil and ctr:count_documents({}) == 1)\n"
      /* A TTL index where the server has them; the outcome is reported, not assumed. */
      "local ttl, te = ctr:create_index({{'exp', 1}}, {expire_after_seconds = 1})\n"
      "print('  info: TTL index: ' .. tostring(ttl or te))\n"
      "assert(ctr:delete_one({_id = k}) == 1)\n"
      "local bi = assert(mongo.build_info())\n"
      "assert(type(bi.version) == 'string' and bi.ok == 1, tostring(bi.version))\n"
      "print('  info: buildInfo version ' .. bi.version .. ', ferretdbVersion ' ..\n"
      "  tostring(bi.ferretdbVersion))\n"
      "return true\n";
  LH_CHECK_INT(run_request(L, &loop, cq, code), 0);
  lua_close(L);
  lh_pools_destroy_all();
  lh_cq_close(cq);
  uv_run(&loop, UV_RUN_DEFAULT);
  LH_CHECK_INT(uv_loop_close(&loop), 0);
}

static void test_live(void) {
  const char *uri = getenv("LH_TEST_MONGODB_URI");
  if (uri == NULL || uri[0] == '\0') {
    printf("ok skipped test_live (LH_TEST_MONGODB_URI is unset)\n");
    return;
  }
  lh_config_t cfg;
  char err[256];
  fill_config(&cfg, uri, 5000);
  LH_CHECK_INT(lh_mongo_init(&cfg, err, sizeof err), 0);
  snprintf(g_coll, sizeof g_coll, "t_%ld_%ld", (long)getpid(), (long)time(NULL));
  live_insert_and_duplicate();
  live_find_and_count();
  live_update();
  live_delete_and_ping();
  live_find_one_latency();
  live_lua();
  lh_mongo_cleanup();
}

int main(void) {
  lh_log_set_level(LH_LOG_OFF);
  if (getenv("LH_TEST_VERBOSE")) {
    lh_log_set_level(LH_LOG_DEBUG);
  }
  LH_RUN(test_classify);
  LH_RUN(test_check_update);
  LH_RUN(test_check_filter);
  LH_RUN(test_server_down);
  LH_RUN(test_lua_arguments);
  LH_RUN(test_live);
  return lh_test_done();
}
