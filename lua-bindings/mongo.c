/* mongo.c: luahost.mongo (see mongo.h). Owns the process-wide mongoc client pool, the
 * pool-thread side of every database operation (lh_mongo_execute), the mapping of libmongoc
 * errors to stable codes, and the Lua bindings that build requests and convert results. */
#include "mongo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bson.h"
#include "json.h"
#include "lh.h"
#include "log.h"
#include "lua_api.h"
#include "readiness.h"
#include "scheduler.h"

#define COLLECTION_MT "luahost.mongo.collection"

static mongoc_client_pool_t *g_pool;
static char g_db[128];
static int g_timeout_ms = 5000;
static int g_mongoc_inited;

/* ---- pool ---------------------------------------------------------------------------------- */

static void set_default_ms(mongoc_uri_t *uri, const char *option, int ms) {
  if (!mongoc_uri_has_option(uri, option)) {
    mongoc_uri_set_option_as_int32(uri, option, ms);
  }
}

/* libmongoc logs to stderr in its own format; route it through lh_log so levels and the JSON line
 * format apply. Its "endSessions" warning at shutdown is harmless with the test servers. */
static void route_mongoc_log(mongoc_log_level_t level, const char *domain, const char *message,
                             void *data) {
  lh_log_level_t lv;
  switch (level) {
  case MONGOC_LOG_LEVEL_ERROR:
  case MONGOC_LOG_LEVEL_CRITICAL: lv = LH_LOG_ERROR; break;
  case MONGOC_LOG_LEVEL_WARNING:
    lv = strstr(message, "endSessions") != NULL ? LH_LOG_DEBUG : LH_LOG_WARN;
    break;
  case MONGOC_LOG_LEVEL_MESSAGE:
  case MONGOC_LOG_LEVEL_INFO: lv = LH_LOG_INFO; break;
  default: lv = LH_LOG_DEBUG; break;
  }
  if (lv >= lh_log_get_level()) {
    lh_log(lv, "mongoc %s: %s", domain, message);
  }
}

/* The readiness check: runs on a db pool thread. */
static int ready_ping(void *ud) {
  (void)ud;
  lh_mongo_req_t req;
  lh_mongo_req_init(&req, LH_MONGO_PING, "");
  lh_mongo_execute(&req);
  int rc = req.code ? LH_EIO : 0;
  lh_mongo_req_destroy(&req);
  return rc;
}

int lh_mongo_init(const lh_config_t *cfg, char *err, size_t errlen) {
  if (g_pool != NULL) {
    snprintf(err, errlen, "mongo: already initialised");
    return LH_EINVAL;
  }
  /* libmongoc can be initialised once per process only: after mongoc_cleanup a second
   * mongoc_init is a no-op and the driver then sends freed handshake metadata (SecantusDB rejects
   * it as invalid BSON). So the driver stays initialised until exit. */
  if (!g_mongoc_inited) {
    mongoc_log_set_handler(route_mongoc_log, NULL);
    mongoc_init();
    atexit(mongoc_cleanup);
    g_mongoc_inited = 1;
  }
  bson_error_t error;
  mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg->mongodb_uri, &error);
  if (uri == NULL) {
    snprintf(err, errlen, "mongodb_uri: %s", error.message);
    return LH_EINVAL;
  }
  /* The driver's defaults wait up to 30 s for a server and forever on a socket: a request must
   * fail within the configured budget instead, so a dead server costs one timeout, not a hang. */
  int ms = cfg->db_timeout_ms > 0 ? cfg->db_timeout_ms : 5000;
  set_default_ms(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, ms);
  set_default_ms(uri, MONGOC_URI_SOCKETTIMEOUTMS, ms);
  set_default_ms(uri, MONGOC_URI_CONNECTTIMEOUTMS, ms);
  set_default_ms(uri, MONGOC_URI_WAITQUEUETIMEOUTMS, ms);
  if (mongoc_uri_get_appname(uri) == NULL) {
    mongoc_uri_set_appname(uri, "luahost");
  }
  mongoc_client_pool_t *pool = mongoc_client_pool_new_with_error(uri, &error);
  mongoc_uri_destroy(uri);
  if (pool == NULL) {
    snprintf(err, errlen, "mongodb_uri: %s", error.message);
    return LH_EINVAL;
  }
  mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
  g_pool = pool;
  g_timeout_ms = ms;
  snprintf(g_db, sizeof g_db, "%s", cfg->db);
  /* /readyz waits for the database: a ping on the db pool (readiness.h). */
  int rc = lh_ready_register("database", "db", ready_ping, NULL, "The database does not answer",
                             "database_unavailable");
  if (rc != 0) {
    snprintf(err, errlen, "mongo: cannot register the readiness check: %s", lh_strerror(rc));
    lh_mongo_cleanup();
    return rc;
  }
  return 0;
}

void lh_mongo_cleanup(void) {
  lh_ready_unregister("database");
  if (g_pool != NULL) {
    mongoc_client_pool_destroy(g_pool);
    g_pool = NULL;
  }
}

/* ---- errors and validation ----------------------------------------------------------------- */

static const char *classify_server_code(uint32_t code) {
  switch (code) {
  case 11000: /* DuplicateKey */
  case 11001: /* legacy duplicate key on update */
  case 12582: /* duplicate key through mongos */ return "duplicate_key";
  case 2: /* BadValue */
  case 14: /* TypeMismatch ($inc on a string, ...) */ return "bad_value";
  case 50:  /* MaxTimeMSExpired */
  case 89:  /* NetworkTimeout */
  case 202: /* NetworkInterfaceExceededTimeLimit */
  case 262: /* ExceededTimeLimit */ return "timeout";
  case 6:     /* HostUnreachable */
  case 7:     /* HostNotFound */
  case 91:    /* ShutdownInProgress */
  case 189:   /* PrimarySteppedDown */
  case 9001:  /* SocketException */
  case 10107: /* NotWritablePrimary */
  case 11600: /* InterruptedAtShutdown */
  case 11602: /* InterruptedDueToReplStateChange */
  case 13435: /* NotPrimaryNoSecondaryOk */
  case 13436: /* NotPrimaryOrSecondary */
  case 64:    /* WriteConcernFailed: the replica set could not confirm the write */
  case 100:   /* UnsatisfiableWriteConcern */
  case 10058: /* legacy NotMaster */ return "unavailable";
  case 115: /* CommandNotSupported */
  case 238: /* NotImplemented: a server without the feature (FerretDB's TTL indexes) */
    return "unsupported";
  default: return "error";
  }
}

const char *lh_mongo_classify(const bson_error_t *error) {
  switch (error->domain) {
  case MONGOC_ERROR_SERVER_SELECTION: return "unavailable";
  case MONGOC_ERROR_STREAM:
    /* libmongoc reports a read that hit socketTimeoutMS as "socket error or timeout" and a
     * connect that timed out as "...timed out"; both mean the budget ran out. */
    if (error->code == MONGOC_ERROR_STREAM_SOCKET && strstr(error->message, "timeout") != NULL) {
      return "timeout";
    }
    if (strstr(error->message, "timed out") != NULL) {
      return "timeout";
    }
    return "unavailable";
  case MONGOC_ERROR_CLIENT:
    /* An authentication failure makes the database unusable, whatever its cause. */
    return error->code == MONGOC_ERROR_CLIENT_AUTHENTICATE ? "unavailable" : "error";
  case MONGOC_ERROR_BSON: return "bad_value";
  case MONGOC_ERROR_COMMAND:
    /* The driver refuses some documents itself (keys starting with '$' in an insert): data.
     * Other codes of this domain are the driver's own enum, not server codes. */
    return error->code == MONGOC_ERROR_COMMAND_INVALID_ARG ? "bad_value" : "error";
  case MONGOC_ERROR_PROTOCOL:
  case MONGOC_ERROR_CURSOR:
    /* A garbled or dropped reply, a cursor lost on the server: the database side failed. */
    return "unavailable";
  case MONGOC_ERROR_SERVER:
  case MONGOC_ERROR_WRITE_CONCERN:
  case MONGOC_ERROR_QUERY:
    /* Only these domains carry the server's own error codes. */
    return classify_server_code(error->code);
  default: return "error";
  }
}

static int is_op(const char *key, const char *const *ops) {
  for (; *ops; ops++) {
    if (strcmp(key, *ops) == 0) {
      return 1;
    }
  }
  return 0;
}

int lh_mongo_check_update(const bson_t *update, char *err, size_t errlen) {
  static const char *const allowed[] = {"$set", "$unset", "$inc", NULL};
  bson_iter_t it;
  if (!bson_iter_init(&it, update)) {
    snprintf(err, errlen, "malformed update");
    return LH_EINVAL;
  }
  int n = 0;
  while (bson_iter_next(&it)) {
    const char *op = bson_iter_key(&it);
    bson_iter_t field;
    if (!is_op(op, allowed)) {
      snprintf(err, errlen, "update operator %s is not allowed (only $set, $unset, $inc)", op);
      return LH_EINVAL;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &field)) {
      snprintf(err, errlen, "%s needs a document", op);
      return LH_EINVAL;
    }
    int fields = 0;
    while (bson_iter_next(&field)) {
      const char *name = bson_iter_key(&field);
      if (name[0] == '\0' || name[0] == '$') {
        snprintf(err, errlen, "%s: bad field name '%s'", op, name);
        return LH_EINVAL;
      }
      if (strcmp(op, "$inc") == 0 && !BSON_ITER_HOLDS_NUMBER(&field)) {
        snprintf(err, errlen, "$inc: %s needs a number", name);
        return LH_EINVAL;
      }
      fields++;
    }
    if (fields == 0) {
      snprintf(err, errlen, "%s is empty", op);
      return LH_EINVAL;
    }
    n++;
  }
  if (n == 0) {
    snprintf(err, errlen, "empty update");
    return LH_EINVAL;
  }
  return 0;
}

static int check_filter_iter(bson_iter_t *it, int depth, char *err, size_t errlen) {
  static const char *const banned[] = {"$where", "$function", "$accumulator", NULL};
  if (depth > LH_BSON_MAX_DEPTH) {
    snprintf(err, errlen, "filter nested too deep");
    return LH_EINVAL;
  }
  while (bson_iter_next(it)) {
    if (is_op(bson_iter_key(it), banned)) {
      snprintf(err, errlen, "filter operator %s is not allowed", bson_iter_key(it));
      return LH_EINVAL;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) {
      bson_iter_t child;
      if (!bson_iter_recurse(it, &child)) {
        snprintf(err, errlen, "malformed filter");
        return LH_EINVAL;
      }
      int rc = check_filter_iter(&child, depth + 1, err, errlen);
      if (rc != 0) {
        return rc;
      }
    }
  }
  return 0;
}

int lh_mongo_check_filter(const bson_t *filter, char *err, size_t errlen) {
  bson_iter_t it;
  if (!bson_iter_init(&it, filter)) {
    snprintf(err, errlen, "malformed filter");
    return LH_EINVAL;
  }
  return check_filter_iter(&it, 1, err, errlen);
}

/* ---- pool-thread operations ---------------------------------------------------------------- */

static const char *op_name(lh_mongo_op_t op) {
  static const char *const names[] = {
      "insert_one", "find_one",     "find", "count_documents", "update_one", "find_one_and_update",
      "delete_one", "create_index", "ping", "build_info"};
  return (unsigned)op < LH_ARRAY_SIZE(names) ? names[op] : "?";
}

static void set_error(lh_mongo_req_t *req, const bson_error_t *error) {
  req->code = lh_mongo_classify(error);
  req->err_domain = error->domain;
  req->err_code = error->code;
  snprintf(req->message, sizeof req->message, "%s", error->message);
  if (strcmp(req->code, "error") == 0) {
    lh_error("mongo %s on %s failed: domain %u code %u: %s", op_name(req->op), req->coll,
             error->domain, error->code, error->message);
  } else {
    lh_debug("mongo %s on %s: %s (domain %u code %u: %s)", op_name(req->op), req->coll, req->code,
             error->domain, error->code, error->message);
  }
}

void lh_mongo_req_init(lh_mongo_req_t *req, lh_mongo_op_t op, const char *coll) {
  memset(req, 0, sizeof *req);
  req->op = op;
  snprintf(req->coll, sizeof req->coll, "%s", coll ? coll : "");
  bson_init(&req->filter);
  bson_init(&req->document);
  bson_init(&req->keys);
  bson_init(&req->update);
  bson_init(&req->projection);
  bson_init(&req->sort);
  bson_init(&req->result);
}

void lh_mongo_req_destroy(lh_mongo_req_t *req) {
  bson_destroy(&req->filter);
  bson_destroy(&req->document);
  bson_destroy(&req->keys);
  bson_destroy(&req->update);
  bson_destroy(&req->projection);
  bson_destroy(&req->sort);
  bson_destroy(&req->result);
}

static int64_t reply_int(const bson_t *reply, const char *key) {
  bson_iter_t it;
  if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it)) {
    return bson_iter_as_int64(&it);
  }
  return 0;
}

static void find_opts(const lh_mongo_req_t *req, bson_t *opts, int64_t limit) {
  bson_init(opts);
  if (!bson_empty(&req->projection)) {
    BSON_APPEND_DOCUMENT(opts, "projection", &req->projection);
  }
  if (!bson_empty(&req->sort)) {
    BSON_APPEND_DOCUMENT(opts, "sort", &req->sort);
  }
  if (req->skip > 0) {
    BSON_APPEND_INT64(opts, "skip", req->skip);
  }
  BSON_APPEND_INT64(opts, "limit", limit);
  if (limit == 1) {
    BSON_APPEND_BOOL(opts, "singleBatch", true);
  }
  BSON_APPEND_INT64(opts, "maxTimeMS", g_timeout_ms);
}

/* Runs a find and appends the documents to req->result: as {"0": d, "1": d, ...} for `find`, or
 * the first document's fields for find_one. */
static void run_find(mongoc_collection_t *coll, lh_mongo_req_t *req, int64_t limit, int one) {
  bson_t opts;
  find_opts(req, &opts, limit);
  mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &req->filter, &opts, NULL);
  bson_destroy(&opts);
  const bson_t *doc;
  uint32_t i = 0;
  while (mongoc_cursor_next(cursor, &doc)) {
    if (one) {
      bson_concat(&req->result, doc);
      req->found = 1;
      break;
    }
    char numbuf[16];
    const char *key;
    size_t klen = bson_uint32_to_string(i++, &key, numbuf, sizeof numbuf);
    bson_append_document(&req->result, key, (int)klen, doc);
  }
  bson_error_t error;
  if (mongoc_cursor_error(cursor, &error)) {
    set_error(req, &error);
  }
  req->n1 = i;
  mongoc_cursor_destroy(cursor);
}

static void run_count(mongoc_collection_t *coll, lh_mongo_req_t *req) {
  bson_t opts = BSON_INITIALIZER;
  BSON_APPEND_INT64(&opts, "maxTimeMS", g_timeout_ms);
  bson_error_t error;
  int64_t n = mongoc_collection_count_documents(coll, &req->filter, &opts, NULL, NULL, &error);
  bson_destroy(&opts);
  if (n < 0) {
    set_error(req, &error);
  } else {
    req->n1 = n;
  }
}

/* Reads the _id of the document `filter` selects, so a uniqueness probe can exclude it. */
static int target_id(mongoc_collection_t *coll, const bson_t *filter, bson_value_t *id) {
  bson_t opts = BSON_INITIALIZER, proj;
  BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
  BSON_APPEND_INT32(&proj, "_id", 1);
  bson_append_document_end(&opts, &proj);
  BSON_APPEND_INT64(&opts, "limit", 1);
  BSON_APPEND_INT64(&opts, "maxTimeMS", g_timeout_ms);
  mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
  bson_destroy(&opts);
  const bson_t *doc;
  bson_iter_t it;
  int found = 0;
  if (mongoc_cursor_next(cursor, &doc) && bson_iter_init_find(&it, doc, "_id")) {
    bson_value_copy(bson_iter_value(&it), id);
    found = 1;
  }
  mongoc_cursor_destroy(cursor);
  return found;
}

/* Some servers (FerretDB) report a unique-index violation on update as a generic error. After a
 * failed update, look for another document that already holds a value this update $sets on one
 * of the caller's unique fields: if one exists, the failure was a duplicate key. */
static int unique_conflict(mongoc_collection_t *coll, const lh_mongo_req_t *req) {
  bson_iter_t set, v;
  if (req->n_unique == 0 || !bson_iter_init_find(&set, &req->update, "$set") ||
      !BSON_ITER_HOLDS_DOCUMENT(&set)) {
    return 0;
  }
  bson_value_t id;
  int have_id = target_id(coll, &req->filter, &id);
  int conflict = 0;
  for (int i = 0; i < req->n_unique && !conflict; i++) {
    bson_iter_t sub;
    if (!bson_iter_recurse(&set, &sub) || !bson_iter_find(&sub, req->unique_fields[i])) {
      continue;
    }
    v = sub;
    bson_t q = BSON_INITIALIZER, ne, opts = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&q, req->unique_fields[i], bson_iter_value(&v));
    if (have_id) {
      BSON_APPEND_DOCUMENT_BEGIN(&q, "_id", &ne);
      BSON_APPEND_VALUE(&ne, "$ne", &id);
      bson_append_document_end(&q, &ne);
    }
    BSON_APPEND_INT64(&opts, "limit", 1);
    BSON_APPEND_INT64(&opts, "maxTimeMS", g_timeout_ms);
    bson_error_t error;
    conflict = mongoc_collection_count_documents(coll, &q, &opts, NULL, NULL, &error) > 0;
    bson_destroy(&q);
    bson_destroy(&opts);
  }
  if (have_id) {
    bson_value_destroy(&id);
  }
  return conflict;
}

static void update_failed(mongoc_collection_t *coll, lh_mongo_req_t *req,
                          const bson_error_t *error) {
  const char *code = lh_mongo_classify(error);
  if (strcmp(code, "error") == 0 && unique_conflict(coll, req)) {
    req->code = "duplicate_key";
    req->err_domain = error->domain;
    req->err_code = error->code;
    snprintf(req->message, sizeof req->message, "%s", error->message);
    lh_debug("mongo %s on %s: duplicate_key (server said: %s)", op_name(req->op), req->coll,
             error->message);
    return;
  }
  set_error(req, error);
}

static void run_update_one(mongoc_collection_t *coll, lh_mongo_req_t *req) {
  bson_t reply;
  bson_error_t error;
  if (!mongoc_collection_update_one(coll, &req->filter, &req->update, NULL, &reply, &error)) {
    update_failed(coll, req, &error);
  } else {
    req->n1 = reply_int(&reply, "matchedCount");
    req->n2 = reply_int(&reply, "modifiedCount");
  }
  bson_destroy(&reply);
}

static int truthy(const bson_iter_t *it) {
  if (BSON_ITER_HOLDS_BOOL(it)) {
    return bson_iter_bool(it);
  }
  return BSON_ITER_HOLDS_NUMBER(it) ? bson_iter_as_int64(it) != 0 : 1;
}

/* Applies a projection of top-level fields ({a: 1, b: 1} or {a: 0}; _id kept unless 0) to doc.
 * findAndModify's own `fields` option is not implemented by FerretDB 1.24 (code 238), so
 * find_one_and_update projects here, identically on every server. */
static void project(const bson_t *doc, const bson_t *proj, bson_t *out) {
  bson_iter_t p, d;
  int include = 0, keep_id = 1;
  if (bson_iter_init(&p, proj)) {
    while (bson_iter_next(&p)) {
      if (strcmp(bson_iter_key(&p), "_id") == 0) {
        keep_id = truthy(&p);
      } else if (truthy(&p)) {
        include = 1;
      }
    }
  }
  if (!bson_iter_init(&d, doc)) {
    return;
  }
  while (bson_iter_next(&d)) {
    const char *k = bson_iter_key(&d);
    int keep;
    if (strcmp(k, "_id") == 0) {
      keep = keep_id;
    } else {
      int listed = bson_iter_init_find(&p, proj, k);
      keep = include ? listed && truthy(&p) : !(listed && !truthy(&p));
    }
    if (keep) {
      bson_append_iter(out, k, (int)bson_iter_key_len(&d), &d);
    }
  }
}

static void run_find_one_and_update(mongoc_collection_t *coll, lh_mongo_req_t *req) {
  mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
  mongoc_find_and_modify_opts_set_update(fam, &req->update);
  mongoc_find_and_modify_opts_set_flags(
      fam, (mongoc_find_and_modify_flags_t)(MONGOC_FIND_AND_MODIFY_RETURN_NEW |
                                            (req->upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0)));
  mongoc_find_and_modify_opts_set_max_time_ms(fam, (uint32_t)g_timeout_ms);
  bson_t reply;
  bson_error_t error;
  bson_iter_t it;
  if (!mongoc_collection_find_and_modify_with_opts(coll, &req->filter, fam, &reply, &error)) {
    update_failed(coll, req, &error);
  } else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
    uint32_t len;
    const uint8_t *data;
    bson_t doc;
    bson_iter_document(&it, &len, &data);
    if (bson_init_static(&doc, data, len)) {
      if (bson_empty(&req->projection)) {
        bson_concat(&req->result, &doc);
      } else {
        project(&doc, &req->projection, &req->result);
      }
      req->found = 1;
    }
  }
  bson_destroy(&reply);
  mongoc_find_and_modify_opts_destroy(fam);
}

static void run_insert_one(mongoc_collection_t *coll, lh_mongo_req_t *req) {
  bson_error_t error;
  if (!mongoc_collection_insert_one(coll, &req->document, NULL, NULL, &error)) {
    set_error(req, &error);
  }
}

static void run_delete_one(mongoc_collection_t *coll, lh_mongo_req_t *req) {
  bson_t reply;
  bson_error_t error;
  if (!mongoc_collection_delete_one(coll, &req->filter, NULL, &reply, &error)) {
    set_error(req, &error);
  } else {
    req->n1 = reply_int(&reply, "deletedCount");
  }
  bson_destroy(&reply);
}

/* libmongoc 1.23 has no index-model API: send createIndexes ourselves. */
static void run_create_index(mongoc_client_t *client, lh_mongo_req_t *req) {
  bson_t cmd = BSON_INITIALIZER, indexes, index, reply;
  BSON_APPEND_UTF8(&cmd, "createIndexes", req->coll);
  BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
  BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
  BSON_APPEND_DOCUMENT(&index, "key", &req->keys);
  BSON_APPEND_UTF8(&index, "name", req->index_name);
  if (req->unique) {
    BSON_APPEND_BOOL(&index, "unique", true);
  }
  if (req->expire_after_s > 0) {
    BSON_APPEND_INT64(&index, "expireAfterSeconds", req->expire_after_s);
  }
  bson_append_document_end(&indexes, &index);
  bson_append_array_end(&cmd, &indexes);
  BSON_APPEND_INT64(&cmd, "maxTimeMS", g_timeout_ms);
  bson_error_t error;
  if (!mongoc_client_write_command_with_opts(client, g_db, &cmd, NULL, &reply, &error)) {
    set_error(req, &error);
  }
  bson_destroy(&reply);
  bson_destroy(&cmd);
}

static void run_ping(mongoc_client_t *client, lh_mongo_req_t *req) {
  bson_t cmd = BSON_INITIALIZER, reply;
  BSON_APPEND_INT32(&cmd, "ping", 1);
  bson_error_t error;
  if (!mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &error)) {
    set_error(req, &error);
  }
  bson_destroy(&reply);
  bson_destroy(&cmd);
}

static void run_build_info(mongoc_client_t *client, lh_mongo_req_t *req) {
  bson_t cmd = BSON_INITIALIZER, reply;
  BSON_APPEND_INT32(&cmd, "buildInfo", 1);
  bson_error_t error;
  if (!mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &error)) {
    set_error(req, &error);
  } else {
    bson_concat(&req->result, &reply);
    req->found = 1;
  }
  bson_destroy(&reply);
  bson_destroy(&cmd);
}

void lh_mongo_execute(lh_mongo_req_t *req) {
  if (g_pool == NULL) {
    req->code = "unavailable";
    snprintf(req->message, sizeof req->message, "mongo is not initialised");
    return;
  }
  /* With waitQueueTimeoutMS set, pop gives up (NULL) instead of waiting forever. */
  mongoc_client_t *client = mongoc_client_pool_pop(g_pool);
  if (client == NULL) {
    req->code = "unavailable";
    snprintf(req->message, sizeof req->message, "no database client free within the wait time");
    return;
  }
  mongoc_collection_t *coll = NULL;
  if (req->op != LH_MONGO_PING && req->op != LH_MONGO_CREATE_INDEX &&
      req->op != LH_MONGO_BUILD_INFO) {
    coll = mongoc_client_get_collection(client, g_db, req->coll);
  }
  switch (req->op) {
  case LH_MONGO_INSERT_ONE: run_insert_one(coll, req); break;
  case LH_MONGO_FIND_ONE: run_find(coll, req, 1, 1); break;
  case LH_MONGO_FIND: run_find(coll, req, req->limit, 0); break;
  case LH_MONGO_COUNT: run_count(coll, req); break;
  case LH_MONGO_UPDATE_ONE: run_update_one(coll, req); break;
  case LH_MONGO_FIND_ONE_AND_UPDATE: run_find_one_and_update(coll, req); break;
  case LH_MONGO_DELETE_ONE: run_delete_one(coll, req); break;
  case LH_MONGO_CREATE_INDEX: run_create_index(client, req); break;
  case LH_MONGO_PING: run_ping(client, req); break;
  case LH_MONGO_BUILD_INFO: run_build_info(client, req); break;
  }
  if (coll != NULL) {
    mongoc_collection_destroy(coll);
  }
  mongoc_client_pool_push(g_pool, client);
}

/* ---- Lua bindings -------------------------------------------------------------------------- */

typedef struct {
  lh_ljob_t lj;
  lh_mongo_req_t req;
} lh_mongo_job_t;

typedef struct {
  char name[128];
} lh_collection_t;

static void job_work(lh_job_t *job) {
  lh_mongo_job_t *mj = LH_CONTAINER_OF(job, lh_mongo_job_t, lj.job);
  lh_mongo_execute(&mj->req);
}

static void job_free(lh_ljob_t *lj) {
  lh_mongo_job_t *mj = LH_CONTAINER_OF(lj, lh_mongo_job_t, lj);
  lh_mongo_req_destroy(&mj->req);
  free(mj);
}

static int push_error(lua_State *co, const char *code) {
  lua_pushnil(co);
  lua_pushstring(co, code);
  return 2;
}

/* The _id of the inserted document: the one the caller gave or the one we generated. */
static int push_inserted_id(lua_State *co, const lh_mongo_req_t *req) {
  bson_iter_t it;
  if (!bson_iter_init_find(&it, &req->document, "_id") || lh_bson_push_iter(co, &it) != 0) {
    return push_error(co, "error");
  }
  return 1;
}

static int push_docs(lua_State *co, const lh_mongo_req_t *req) {
  bson_iter_t it;
  lua_createtable(co, (int)req->n1, 0);
  int t = lua_gettop(co), i = 1;
  if (!bson_iter_init(&it, &req->result)) {
    lua_settop(co, t - 1);
    return push_error(co, "error");
  }
  while (bson_iter_next(&it)) {
    if (lh_bson_push_iter(co, &it) != 0) {
      lh_error("mongo find on %s: a document could not be converted to Lua", req->coll);
      lua_settop(co, t - 1);
      return push_error(co, "error");
    }
    lua_rawseti(co, t, i++);
  }
  lh_json_push_array_mt(co);
  lua_setmetatable(co, t);
  return 1;
}

static int push_found(lua_State *co, const lh_mongo_req_t *req) {
  if (!req->found) {
    lua_pushnil(co);
    return 1;
  }
  if (lh_bson_to_lua(co, &req->result) != 0) {
    lh_error("mongo %s on %s: the document could not be converted to Lua", op_name(req->op),
             req->coll);
    return push_error(co, "error");
  }
  return 1;
}

static int job_push(lh_ljob_t *lj, lua_State *co) {
  lh_mongo_job_t *mj = LH_CONTAINER_OF(lj, lh_mongo_job_t, lj);
  const lh_mongo_req_t *req = &mj->req;
  if (lj->job.cancelled) {
    return push_error(co, "unavailable");
  }
  if (req->code != NULL) {
    return push_error(co, req->code);
  }
  switch (req->op) {
  case LH_MONGO_INSERT_ONE: return push_inserted_id(co, req);
  case LH_MONGO_FIND_ONE:
  case LH_MONGO_FIND_ONE_AND_UPDATE:
  case LH_MONGO_BUILD_INFO: return push_found(co, req);
  case LH_MONGO_FIND: return push_docs(co, req);
  case LH_MONGO_UPDATE_ONE:
    lua_pushnumber(co, (lua_Number)req->n1);
    lua_pushnumber(co, (lua_Number)req->n2);
    return 2;
  case LH_MONGO_COUNT:
  case LH_MONGO_DELETE_ONE: lua_pushnumber(co, (lua_Number)req->n1); return 1;
  case LH_MONGO_CREATE_INDEX:
  case LH_MONGO_PING:
  default: lua_pushboolean(co, 1); return 1;
  }
}

static lh_mongo_job_t *job_new(lua_State *L, lh_mongo_op_t op, const char *coll) {
  lh_mongo_job_t *mj = malloc(sizeof *mj);
  if (mj == NULL) {
    luaL_error(L, "out of memory");
    return NULL;
  }
  memset(&mj->lj, 0, sizeof mj->lj);
  lh_mongo_req_init(&mj->req, op, coll);
  mj->lj.job.work = job_work;
  mj->lj.push = job_push;
  mj->lj.free = job_free;
  return mj;
}

/* Raises an argument error after releasing the job (the message is copied to Lua first). */
static int arg_fail(lua_State *L, lh_mongo_job_t *mj, int narg, const char *msg) {
  lua_pushstring(L, msg);
  job_free(&mj->lj);
  return luaL_argerror(L, narg, lua_tostring(L, -1));
}

/* Returns 2 (nil, "bad_value") after releasing the job: bad data, not a programming error. */
static int value_fail(lua_State *L, lh_mongo_job_t *mj, const char *why) {
  lh_debug("mongo %s on %s: bad_value: %s", op_name(mj->req.op), mj->req.coll, why);
  job_free(&mj->lj);
  return push_error(L, "bad_value");
}

static const char *check_collection(lua_State *L) {
  lh_collection_t *c = luaL_checkudata(L, 1, COLLECTION_MT);
  return c->name;
}

/* Converts the filter at narg; returns 0, or the value to return from the binding (already
 * pushed; or raises) when it failed. */
static int take_filter(lua_State *L, lh_mongo_job_t *mj, int narg, int *ret) {
  char err[256];
  if (lua_type(L, narg) != LUA_TTABLE) {
    *ret = arg_fail(L, mj, narg, "filter table expected");
    return -1;
  }
  if (lh_bson_from_lua(L, narg, &mj->req.filter, err, sizeof err) != 0) {
    *ret = arg_fail(L, mj, narg, err);
    return -1;
  }
  if (lh_mongo_check_filter(&mj->req.filter, err, sizeof err) != 0) {
    *ret = value_fail(L, mj, err);
    return -1;
  }
  return 0;
}

static int take_update(lua_State *L, lh_mongo_job_t *mj, int narg, int *ret) {
  char err[256];
  if (lua_type(L, narg) != LUA_TTABLE) {
    *ret = arg_fail(L, mj, narg, "update table expected");
    return -1;
  }
  if (lh_bson_from_lua(L, narg, &mj->req.update, err, sizeof err) != 0) {
    *ret = arg_fail(L, mj, narg, err);
    return -1;
  }
  if (lh_mongo_check_update(&mj->req.update, err, sizeof err) != 0) {
    *ret = value_fail(L, mj, err);
    return -1;
  }
  return 0;
}

/* Appends a list of {field, 1|-1} pairs to `out` in order (sort specs and index keys). */
static int take_pairs(lua_State *L, int idx, bson_t *out, char *err, size_t errlen) {
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "a list of {field, 1|-1} pairs expected");
    return LH_EINVAL;
  }
  size_t n = lua_objlen(L, idx);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    int ok = lua_type(L, -1) == LUA_TTABLE;
    if (ok) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      size_t flen;
      const char *field = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &flen) : NULL;
      lua_Number dir = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
      ok = field != NULL && flen > 0 && strlen(field) == flen && (dir == 1 || dir == -1);
      if (ok) {
        BSON_APPEND_INT32(out, field, (int32_t)dir);
      }
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    if (!ok) {
      snprintf(err, errlen, "pair %zu must be {field, 1|-1}", i);
      return LH_EINVAL;
    }
  }
  if (n == 0) {
    snprintf(err, errlen, "at least one {field, 1|-1} pair expected");
    return LH_EINVAL;
  }
  return 0;
}

static int take_unique_fields(lua_State *L, int idx, lh_mongo_req_t *req, char *err,
                              size_t errlen) {
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "unique_fields must be a list of field names");
    return LH_EINVAL;
  }
  size_t n = lua_objlen(L, idx);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    size_t len = 0;
    const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (f == NULL || len == 0 || len >= sizeof req->unique_fields[0] ||
        req->n_unique >= LH_MONGO_MAX_UNIQUE) {
      lua_pop(L, 1);
      snprintf(err, errlen, "unique_fields: entry %zu must be a short field name", i);
      return LH_EINVAL;
    }
    memcpy(req->unique_fields[req->n_unique++], f, len + 1);
    lua_pop(L, 1);
  }
  return 0;
}

/* Reads the options table at idx. `allowed` lists the keys this method accepts; unknown keys are
 * the caller's mistake. Returns 0, or -1 with *ret set (raised or nil, "bad_value" pushed). */
static int take_opts(lua_State *L, lh_mongo_job_t *mj, int idx, const char *const *allowed,
                     int *ret) {
  char err[256];
  lh_mongo_req_t *req = &mj->req;
  if (lua_isnoneornil(L, idx)) {
    return 0;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    *ret = arg_fail(L, mj, idx, "options table expected");
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int vi = lua_gettop(L), rc = 0, bad_value = 0;
    if (key == NULL || !is_op(key, allowed)) {
      snprintf(err, sizeof err, "unknown option %s", key ? key : "(non-string key)");
      rc = -1;
    } else if (strcmp(key, "projection") == 0) {
      rc = lua_type(L, vi) == LUA_TTABLE
               ? lh_bson_from_lua(L, vi, &req->projection, err, sizeof err)
               : (snprintf(err, sizeof err, "projection must be a table"), -1);
    } else if (strcmp(key, "sort") == 0) {
      rc = take_pairs(L, vi, &req->sort, err, sizeof err);
    } else if (strcmp(key, "unique_fields") == 0) {
      rc = take_unique_fields(L, vi, req, err, sizeof err);
    } else if (strcmp(key, "unique") == 0) {
      rc = lua_type(L, vi) == LUA_TBOOLEAN ? 0 : (snprintf(err, sizeof err, "unique: boolean"), -1);
      req->unique = lua_toboolean(L, vi);
    } else if (strcmp(key, "name") == 0) {
      size_t len = 0;
      const char *s = lua_type(L, vi) == LUA_TSTRING ? lua_tolstring(L, vi, &len) : NULL;
      rc = s && len > 0 && len < sizeof req->index_name ? 0 : -1;
      if (rc == 0) {
        memcpy(req->index_name, s, len + 1);
      } else {
        snprintf(err, sizeof err, "name must be a short string");
      }
    } else if (strcmp(key, "upsert") == 0) {
      /* update_one accepts only false (an upsert there would bypass the service's create path);
       * find_one_and_update takes either, for atomic counters. */
      int yes = lua_toboolean(L, vi);
      rc = lua_type(L, vi) == LUA_TBOOLEAN && (!yes || req->op == LH_MONGO_FIND_ONE_AND_UPDATE)
               ? 0
               : (snprintf(err, sizeof err, "upsert must be false"), -1);
      req->upsert = yes;
    } else if (strcmp(key, "expire_after_seconds") == 0) {
      lua_Number v = lua_type(L, vi) == LUA_TNUMBER ? lua_tonumber(L, vi) : 0;
      rc = v >= 1 && v <= 1e9 && v == floor(v)
               ? 0
               : (snprintf(err, sizeof err, "expire_after_seconds: an integer from 1"), -1);
      req->expire_after_s = (int64_t)v;
    } else { /* skip, limit: numbers that may come from a client's query */
      if (lua_type(L, vi) != LUA_TNUMBER) {
        snprintf(err, sizeof err, "%s must be a number", key);
        rc = -1;
      } else {
        lua_Number v = lua_tonumber(L, vi);
        int is_limit = strcmp(key, "limit") == 0;
        if (v != floor(v) || v < (is_limit ? 1 : 0) || v > 1e15) {
          snprintf(err, sizeof err, "%s out of range", key);
          bad_value = 1;
        } else if (is_limit) {
          req->limit = v > LH_MONGO_MAX_LIMIT ? LH_MONGO_MAX_LIMIT : (int64_t)v;
        } else {
          req->skip = (int64_t)v;
        }
      }
    }
    lua_pop(L, 1);
    if (rc != 0 || bad_value) {
      lua_pop(L, 1);
      *ret = bad_value ? value_fail(L, mj, err) : arg_fail(L, mj, idx, err);
      return -1;
    }
  }
  return 0;
}

static int l_insert_one(lua_State *L) {
  const char *name = check_collection(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_INSERT_ONE, name);
  char err[256];
  /* The _id goes first, as mongod would put it, and is known before the insert runs. */
  lua_pushliteral(L, "_id"); /* raw: a raising __index must not leak the job */
  lua_rawget(L, 2);
  int has_id = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!has_id) {
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    BSON_APPEND_OID(&mj->req.document, "_id", &oid);
  }
  if (lh_bson_from_lua(L, 2, &mj->req.document, err, sizeof err) != 0) {
    return arg_fail(L, mj, 2, err);
  }
  /* Field names starting with '$' or containing '.' are refused by some servers, stored by
   * others and unreachable by queries everywhere: refuse them here, the same on every server. */
  bson_error_t verr;
  if (!bson_validate_with_error(&mj->req.document,
                                BSON_VALIDATE_DOLLAR_KEYS | BSON_VALIDATE_DOT_KEYS, &verr)) {
    return value_fail(L, mj, verr.message);
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_find_one(lua_State *L) {
  static const char *const allowed[] = {"projection", "sort", NULL};
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_FIND_ONE, name);
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0 || take_opts(L, mj, 3, allowed, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_find(lua_State *L) {
  static const char *const allowed[] = {"projection", "sort", "skip", "limit", NULL};
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_FIND, name);
  mj->req.limit = LH_MONGO_MAX_LIMIT;
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0 || take_opts(L, mj, 3, allowed, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_count_documents(lua_State *L) {
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_COUNT, name);
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_update_one(lua_State *L) {
  static const char *const allowed[] = {"upsert", "unique_fields", NULL};
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_UPDATE_ONE, name);
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0 || take_update(L, mj, 3, &ret) != 0 ||
      take_opts(L, mj, 4, allowed, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_find_one_and_update(lua_State *L) {
  static const char *const allowed[] = {"projection", "unique_fields", "upsert", NULL};
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_FIND_ONE_AND_UPDATE, name);
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0 || take_update(L, mj, 3, &ret) != 0 ||
      take_opts(L, mj, 4, allowed, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_delete_one(lua_State *L) {
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_DELETE_ONE, name);
  int ret;
  if (take_filter(L, mj, 2, &ret) != 0) {
    return ret;
  }
  return lh_sched_await(L, "db", &mj->lj);
}

/* Default index name as mongod builds it: field_dir joined by '_' (username_lc_1). */
static void default_index_name(const bson_t *keys, char *out, size_t outlen) {
  bson_iter_t it;
  size_t used = 0;
  out[0] = '\0';
  if (!bson_iter_init(&it, keys)) {
    return;
  }
  while (bson_iter_next(&it) && used < outlen) {
    int n = snprintf(out + used, outlen - used, "%s%s_%d", used ? "_" : "", bson_iter_key(&it),
                     bson_iter_int32(&it));
    used += n > 0 ? (size_t)n : 0;
  }
}

static int l_create_index(lua_State *L) {
  static const char *const allowed[] = {"unique", "name", "expire_after_seconds", NULL};
  const char *name = check_collection(L);
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_CREATE_INDEX, name);
  char err[256];
  int ret;
  if (take_pairs(L, 2, &mj->req.keys, err, sizeof err) != 0) {
    return arg_fail(L, mj, 2, err);
  }
  if (take_opts(L, mj, 3, allowed, &ret) != 0) {
    return ret;
  }
  if (mj->req.index_name[0] == '\0') {
    default_index_name(&mj->req.keys, mj->req.index_name, sizeof mj->req.index_name);
  }
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_collection_tostring(lua_State *L) {
  lua_pushfstring(L, "luahost.mongo.collection(%s)", check_collection(L));
  return 1;
}

static int l_collection(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  if (len == 0 || len >= sizeof(((lh_collection_t *)0)->name) || strlen(name) != len ||
      name[0] == '$' || strncmp(name, "system.", 7) == 0) {
    return luaL_argerror(L, 1, "bad collection name");
  }
  lh_collection_t *c = lua_newuserdata(L, sizeof *c);
  memcpy(c->name, name, len + 1);
  luaL_getmetatable(L, COLLECTION_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_ping(lua_State *L) {
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_PING, "");
  return lh_sched_await(L, "db", &mj->lj);
}

static int l_build_info(lua_State *L) {
  lh_mongo_job_t *mj = job_new(L, LH_MONGO_BUILD_INFO, "");
  return lh_sched_await(L, "db", &mj->lj);
}

int luaopen_luahost_mongo(lua_State *L) {
  static const luaL_Reg methods[] = {{"insert_one", l_insert_one},
                                     {"find_one", l_find_one},
                                     {"find", l_find},
                                     {"count_documents", l_count_documents},
                                     {"update_one", l_update_one},
                                     {"find_one_and_update", l_find_one_and_update},
                                     {"delete_one", l_delete_one},
                                     {"create_index", l_create_index},
                                     {NULL, NULL}};
  /* The method table is built once per state and kept in the registry with the metatable. */
  static const luaL_Reg meta[] = {{"__tostring", l_collection_tostring}, {NULL, NULL}};
  lh_lua_class(L, COLLECTION_MT, methods, meta);
  lua_newtable(L);
  lua_pushcfunction(L, l_collection);
  lua_setfield(L, -2, "collection");
  lua_pushcfunction(L, l_ping);
  lua_setfield(L, -2, "ping");
  lua_pushcfunction(L, l_build_info);
  lua_setfield(L, -2, "build_info");
  lh_bson_register_constructors(L);
  return 1;
}
