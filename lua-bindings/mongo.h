/* mongo.h: luahost.mongo, the database API for scripts, over one process-wide mongoc client pool.
 *
 * Every operation is split in three so the blocking part never sees a lua_State:
 * the binding builds an lh_mongo_req_t (BSON built on the loop thread), lh_mongo_execute runs it
 * on a "db" pool thread with a client popped from the pool, and the push step converts the result
 * back to Lua on the loop. lh_mongo_execute is public so tests can run operations directly.
 *
 * Lua API (`local mongo = require "luahost.mongo"`), callable from a request's coroutine; each
 * yields while the database works. Runtime outcomes return nil, code with a stable code:
 * "duplicate_key", "timeout", "unavailable", "bad_value", "overloaded" (db queue full), "error".
 * Wrong argument types raise.
 *   mongo.collection(name)                      -> collection
 *   coll:insert_one(doc)                        -> inserted _id (a new ObjectId if doc had none)
 *   coll:find_one(filter[, {projection=, sort=}]) -> doc | nil (not found) | nil, code
 *   coll:find(filter[, {projection=, sort=, skip=, limit=}]) -> array of docs
 *        sort is a list of pairs: {{"username", 1}, {"_id", -1}}; limit 1..1000 (clamped to 1000),
 *        limit <= 0 or skip < 0 -> nil, "bad_value"
 *   coll:count_documents(filter)                -> integer
 *   coll:update_one(filter, update[, {unique_fields={...}}]) -> matched, modified
 *        update may use $set, $unset and $inc only (anything else -> nil, "bad_value")
 *   coll:find_one_and_update(filter, update[, {projection=, unique_fields=, upsert=}])
 *        -> new doc | nil; with upsert=true a missing document is inserted (filter equalities
 *        plus the update) and returned, so one call is an atomic counter ($inc)
 *   coll:delete_one(filter)                     -> deleted count
 *   coll:create_index({{"field", 1}, ...}[, {unique=true, name="...", expire_after_seconds=n}])
 *        -> true; expire_after_seconds makes a TTL index (servers without them answer an error)
 *   mongo.ping()                                -> true | nil, code
 *   mongo.build_info()                          -> the server's buildInfo reply | nil, code
 *        (version, and a server's own fields such as ferretdbVersion: for feature detection)
 *   mongo.objectid([hex]), mongo.date(ms), mongo.now(), mongo.regex(pattern[, options])
 *   oid:date() -> the date the ObjectId was made (second precision)
 * A filter may not contain $where, $function or $accumulator (server-side JavaScript). */
#ifndef LH_MONGO_H
#define LH_MONGO_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <mongoc/mongoc.h>

#include "config.h"

#define LH_MONGO_MAX_LIMIT 1000
#define LH_MONGO_MAX_UNIQUE 8

typedef enum {
  LH_MONGO_INSERT_ONE,
  LH_MONGO_FIND_ONE,
  LH_MONGO_FIND,
  LH_MONGO_COUNT,
  LH_MONGO_UPDATE_ONE,
  LH_MONGO_FIND_ONE_AND_UPDATE,
  LH_MONGO_DELETE_ONE,
  LH_MONGO_CREATE_INDEX,
  LH_MONGO_PING,
  LH_MONGO_BUILD_INFO
} lh_mongo_op_t;

/* One operation and its outcome. Inputs are filled on the loop thread, outputs on the pool thread.
 * Every bson_t is initialised by lh_mongo_req_init and released by lh_mongo_req_destroy. */
typedef struct lh_mongo_req_s {
  lh_mongo_op_t op;
  char coll[128];
  bson_t filter;   /* find*, count, update_one, find_one_and_update, delete_one */
  bson_t document; /* insert_one: the document (its _id is set before the job runs) */
  bson_t keys;     /* create_index: the key pattern */
  bson_t update;   /* update_one, find_one_and_update */
  bson_t projection;
  bson_t sort;
  int64_t skip, limit;    /* find; limit is already clamped */
  int unique;             /* create_index */
  int64_t expire_after_s; /* create_index: > 0 makes a TTL index (expireAfterSeconds) */
  int upsert;             /* find_one_and_update: insert when nothing matches */
  char index_name[128];
  char unique_fields[LH_MONGO_MAX_UNIQUE][64]; /* fields whose uniqueness an update may violate */
  int n_unique;
  /* outputs */
  const char *code;              /* NULL on success, else a stable error code */
  bson_t result;                 /* find_one / find_one_and_update: the document (empty = none);
                                    find: {"0": doc, "1": doc, ...} */
  int found;                     /* find_one / find_one_and_update: 1 when a document came back */
  int64_t n1, n2;                /* count; matched and modified; deleted */
  char message[512];             /* the server's message when code is set */
  uint32_t err_domain, err_code; /* libmongoc's error domain and code, for logs and tests */
} lh_mongo_req_t;

/* Starts the pool. Never fails because the server is down: operations report "unavailable" until
 * it answers. Fails (LH_EINVAL with a message) on a malformed URI. */
int lh_mongo_init(const lh_config_t *cfg, char *err, size_t errlen);
void lh_mongo_cleanup(void);

void lh_mongo_req_init(lh_mongo_req_t *req, lh_mongo_op_t op, const char *coll);
void lh_mongo_req_destroy(lh_mongo_req_t *req);

/* Runs the operation on the calling (pool) thread; sets req->code on failure. */
void lh_mongo_execute(lh_mongo_req_t *req);

/* Maps a libmongoc error (error API version 2) to a stable code: "duplicate_key", "timeout",
 * "unavailable", "bad_value" or "error". */
const char *lh_mongo_classify(const bson_error_t *error);

/* Validation of data that reaches the server; 0 or LH_EINVAL with a reason in err. */
int lh_mongo_check_update(const bson_t *update, char *err, size_t errlen);
int lh_mongo_check_filter(const bson_t *filter, char *err, size_t errlen);

int luaopen_luahost_mongo(lua_State *L);

#endif
