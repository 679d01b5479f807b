-- lib/users.lua: the user records, and the only module that talks to the users collection.
--
-- Owns: the document shape (docs/architecture.md, section 9: _id, username, username_lc,
-- password_hash, userage, role, token_version, created_at, updated_at), the projection that keeps
-- password hashes inside the database layer, the public form of a user, case-insensitive names,
-- the list query (escaped substring filter, whitelisted sort), password checks and re-hashing, and
-- the "at least one admin" rule.
--
-- Password hashes never leave this file: every read that serves a client uses PUBLIC (an inclusion
-- projection, so even fields this file does not know about stay in the database), and the few
-- reads that need the hash (login, the last-admin undo) keep it in locals that are never returned.
--
-- Runtime outcomes are `nil, code`: "not_found", "username_taken", "last_admin",
-- "bad_credentials", "weak_password" (the hashing scheme refused the password), or a binding's
-- code ("unavailable", "timeout", "overloaded", "error") that the caller passes on.

local core = require "luahost"
local log = require "luahost.log"
local json = require "luahost.json"
local mongo = require "luahost.mongo"
local password = require "luahost.password"

local type, tostring, pairs, ipairs = type, tostring, pairs, ipairs
local lower, gsub = string.lower, string.gsub

local NULL = json.null

local M = {}

-- What a client-facing read fetches. Listing fields (rather than excluding password_hash) means a
-- legacy `password` or `hashed_password` field from the original service can never leak either.
local PUBLIC = {
  _id = 1, username = 1, username_lc = 1, userage = 1, role = 1, token_version = 1,
  created_at = 1, updated_at = 1,
}
M.PUBLIC_PROJECTION = PUBLIC

-- The query's sort_by names mapped to stored fields: names sort by their lower-cased copy so
-- "alice" and "Bob" come out in the order a person expects. Nothing else can be sorted on.
local SORT_FIELDS = { username = "username_lc", userage = "userage", created_at = "created_at" }
M.SORT_FIELDS = SORT_FIELDS

local coll_cache
local function coll()
  if not coll_cache then
    -- Read at first use, not at load: the name is a start-up setting and --check has no database.
    local cfg = core.config
    coll_cache = mongo.collection(cfg and cfg.users_collection or "users")
  end
  return coll_cache
end

-- ---------------------------------------------------------------------------------------------
-- Pure helpers (covered by tests/spec/users_lib_spec.lua)

-- Case-insensitive identity of a username. ASCII only, like the rest of the stack (string.lower
-- in the C locale): "Alice" and "alice" are one name, non-ASCII letters compare exactly.
function M.normalize(name)
  return lower(name)
end

-- Escapes every regex metacharacter so the input matches literally (PCRE on MongoDB, RE2 on
-- FerretDB: both read a backslash before punctuation as that character itself).
function M.escape_regex(s)
  return (gsub(s, "[%^%$%.%|%?%*%+%(%)%[%]%{%}\\]", "\\%0"))
end

-- RFC 3339 text of a stored timestamp (a luahost.date prints as one), or null when missing.
local function timestamp(v)
  if v == nil or v == NULL then return NULL end
  return tostring(v)
end

-- The public form of a user document: what every response shows, and nothing more.
function M.serialize(doc)
  return {
    id = tostring(doc._id),
    username = doc.username == nil and NULL or doc.username,
    userage = doc.userage == nil and NULL or doc.userage,
    role = doc.role == nil and NULL or doc.role,
    created_at = timestamp(doc.created_at),
    updated_at = timestamp(doc.updated_at),
  }
end

-- The authenticated caller as policies and handlers see it: the public fields plus the token
-- version the request's token must match. Built from a fresh read on every request, so a role
-- change or a deletion applies at once.
function M.principal(doc)
  local p = M.serialize(doc)
  p.token_version = type(doc.token_version) == "number" and doc.token_version or 0
  return p
end

-- The public form of a principal (what GET /users/{own id} shows without a second read).
function M.public_view(user)
  return {
    id = user.id, username = user.username, userage = user.userage, role = user.role,
    created_at = user.created_at, updated_at = user.updated_at,
  }
end

-- The list filter for validated query values q (see lib/schemas.lua list_query).
function M.list_filter(q)
  local filter = {}
  if q.username and q.username ~= "" then
    -- The {$regex = "..."} form rather than a BSON regex value: SecantusDB answers nothing for a
    -- bare regex on an indexed field (and username_lc is indexed); both forms mean the same to
    -- MongoDB and FerretDB. No options: the input is lower-cased to match username_lc instead.
    filter.username_lc = { ["$regex"] = M.escape_regex(M.normalize(q.username)) }
  end
  if q.min_age or q.max_age then
    local range = {}
    if q.min_age then range["$gte"] = q.min_age end
    if q.max_age then range["$lte"] = q.max_age end
    filter.userage = range
  end
  return filter
end

-- The sort for validated query values: the chosen field, then _id in the same direction so pages
-- are stable and "desc" is exactly the reverse of "asc".
function M.list_sort(q)
  local dir = q.sort_order == "desc" and -1 or 1
  return { { SORT_FIELDS[q.sort_by] or "username_lc", dir }, { "_id", dir } }
end

-- An ObjectId from a client's hex string, or nil: a malformed id is simply a user that does not
-- exist (404), never a server error.
local function oid_of(hex)
  if type(hex) ~= "string" or #hex ~= 24 then return nil end
  return (mongo.objectid(hex))
end
M.oid_of = oid_of

-- ---------------------------------------------------------------------------------------------
-- Reads

-- find(id_hex) -> public doc | nil (unknown or malformed id) | nil, err
function M.find(id_hex)
  local oid = oid_of(id_hex)
  if not oid then return nil end
  return coll():find_one({ _id = oid }, { projection = PUBLIC })
end

-- list(q) -> array of public docs, total | nil, err
function M.list(q)
  local filter = M.list_filter(q)
  local docs, err = coll():find(filter, {
    projection = PUBLIC, sort = M.list_sort(q), skip = q.skip, limit = q.limit,
  })
  if not docs then return nil, err end
  local total
  total, err = coll():count_documents(filter)
  if not total then return nil, err end
  return docs, total
end

-- exists(username) -> true | false | nil, err
function M.exists(username)
  local doc, err = coll():find_one({ username_lc = M.normalize(username) },
                                   { projection = { _id = 1 } })
  if err then return nil, err end
  return doc ~= nil
end

-- ---------------------------------------------------------------------------------------------
-- Passwords

-- check_password(username, pw) -> principal | nil, "bad_credentials" | nil, err
-- An unknown user, a user without a usable hash and a wrong password all cost one hash
-- verification and give the same answer, so timing does not tell which names exist.
function M.check_password(username, pw)
  local doc, err = coll():find_one({ username_lc = M.normalize(username) }, {
    projection = { _id = 1, username = 1, userage = 1, role = 1, token_version = 1,
                   created_at = 1, updated_at = 1, password_hash = 1 },
  })
  if err then return nil, err end
  local hash = doc and doc.password_hash
  if type(hash) ~= "string" then
    local _, derr = password.verify_dummy(pw)
    if derr and derr ~= "bad_value" then return nil, derr end
    return nil, "bad_credentials"
  end
  local ok, verr = password.verify(pw, hash)
  if verr == "bad_hash" or verr == "bad_value" then
    -- A corrupt stored hash or a NUL in the password: a failed login, not a server error.
    if verr == "bad_hash" then
      log.warn("user " .. tostring(doc._id) .. " has an unusable password hash")
    end
    return nil, "bad_credentials"
  end
  if verr then return nil, verr end
  if not ok then return nil, "bad_credentials" end

  -- bcrypt hashes from the original service (or hashes made with older parameters) are replaced
  -- now that the plain password is at hand. The filter on the old hash makes a concurrent
  -- password change win; a failure here only delays the upgrade to the next login.
  if password.needs_rehash(hash) then
    local new_hash, herr = password.hash(pw)
    if new_hash then
      local matched, uerr = coll():update_one({ _id = doc._id, password_hash = hash },
                                              { ["$set"] = { password_hash = new_hash } })
      if not matched then
        log.warn("re-hashing the password of " .. tostring(doc._id) .. " failed: " .. uerr)
      end
    else
      log.warn("re-hashing the password of " .. tostring(doc._id) .. " failed: " .. tostring(herr))
    end
  end
  return M.principal(doc)
end

local function hash_password(pw)
  local hash, err = password.hash(pw)
  if hash then return hash end
  -- Only bcrypt refuses a valid password (over 72 bytes): tell the client, do not fail.
  if err == "bad_value" then return nil, "weak_password" end
  return nil, err
end

-- ---------------------------------------------------------------------------------------------
-- Writes

-- create({username, password, userage, role}) -> public doc | nil, code
function M.create(fields)
  -- Cheap early answer for a taken name, so a duplicate does not cost a hash. The unique index on
  -- username_lc still decides races: of concurrent creates of one name exactly one insert wins.
  local taken, err = M.exists(fields.username)
  if taken == nil then return nil, err end
  if taken then return nil, "username_taken" end
  local hash
  hash, err = hash_password(fields.password)
  if not hash then return nil, err end
  local now = mongo.now()
  local doc = {
    username = fields.username, username_lc = M.normalize(fields.username),
    password_hash = hash, userage = fields.userage, role = fields.role or "user",
    token_version = 0, created_at = now, updated_at = now,
  }
  local id
  id, err = coll():insert_one(doc)
  if not id then
    if err == "duplicate_key" then return nil, "username_taken" end
    return nil, err
  end
  doc._id, doc.password_hash = id, nil
  return doc
end

-- revoke_tokens(principal) -> true | nil, err: every token issued before now stops working.
function M.revoke_tokens(user)
  local oid = oid_of(user.id)
  if not oid then return nil, "not_found" end
  -- update_one answers matched, modified: only a nil first value is a failure.
  local matched, err = coll():update_one({ _id = oid }, { ["$inc"] = { token_version = 1 } })
  if not matched then return nil, err end
  return true
end

-- The last-admin rule, race-proof without transactions. Two admins demoting each other at the
-- same time could each see "another admin exists" and both succeed, leaving none. So a write that
-- takes an admin away is (1) refused up front when no other admin exists, then (2) applied, then
-- (3) followed by a fresh count of admins; when that count is zero the write is undone and the
-- caller gets 409. Why this is enough: admins only disappear through such writes, and each one
-- counts after its own write, so the last of any group of concurrent writes counts after all of
-- them landed and sees the true result; an undo only ever adds an admin back. The cost is that
-- two racing writes may both be refused where one could have succeeded: the safe side.
local function other_admin_exists(oid)
  local n, err = coll():count_documents({ role = "admin", _id = { ["$ne"] = oid } })
  if not n then return nil, err end
  return n > 0
end

local function admins_left()
  return coll():count_documents({ role = "admin" })
end

-- The full stored document (hash included, for an exact undo); never returned from this module.
local function find_full(oid)
  return coll():find_one({ _id = oid })
end

-- update(id_hex, changes) -> public doc | nil, code
-- changes: validated {username?, password?, userage?, role?}. A new password bumps the token
-- version (older tokens fail); a new username updates its lower-cased copy.
function M.update(id_hex, changes)
  local oid = oid_of(id_hex)
  if not oid then return nil, "not_found" end

  local set = { updated_at = mongo.now() }
  local update = { ["$set"] = set }
  if changes.username ~= nil then
    set.username, set.username_lc = changes.username, M.normalize(changes.username)
  end
  if changes.userage ~= nil then set.userage = changes.userage end
  if changes.role ~= nil then set.role = changes.role end

  -- Reading first costs one query but answers 404 before a hash is spent, and tells whether
  -- this write takes an admin away.
  local prev, err = find_full(oid)
  if err then return nil, err end
  if not prev then return nil, "not_found" end
  local demotes = prev.role == "admin" and changes.role ~= nil and changes.role ~= "admin"
  if demotes then
    local other
    other, err = other_admin_exists(oid)
    if other == nil then return nil, err end
    if not other then return nil, "last_admin" end
  end

  if changes.password ~= nil then
    local hash
    hash, err = hash_password(changes.password)
    if not hash then return nil, err end
    set.password_hash = hash
    update["$inc"] = { token_version = 1 }
  end

  local doc
  doc, err = coll():find_one_and_update({ _id = oid }, update,
                                        { projection = PUBLIC, unique_fields = { "username_lc" } })
  if err then
    if err == "duplicate_key" then return nil, "username_taken" end
    return nil, err
  end
  if not doc then return nil, "not_found" end      -- deleted between the read and the write

  if demotes then
    local n
    n, err = admins_left()
    if n == 0 then
      -- Undo every field this update touched, from the stored copy read above.
      local undo = {}
      for k in pairs(set) do undo[k] = prev[k] == nil and NULL or prev[k] end
      undo.token_version = prev.token_version or 0
      local matched, uerr = coll():update_one({ _id = oid }, { ["$set"] = undo })
      if not matched then
        log.error("undoing the demotion of the last admin " .. id_hex .. " failed: " .. uerr)
      end
      return nil, "last_admin"
    elseif not n then
      log.warn("could not re-count admins after demoting " .. id_hex .. ": " .. tostring(err))
    end
  end
  return doc
end

-- delete(id_hex) -> true | nil, code
function M.delete(id_hex)
  local oid = oid_of(id_hex)
  if not oid then return nil, "not_found" end
  local prev, err = find_full(oid)
  if err then return nil, err end
  if not prev then return nil, "not_found" end
  local was_admin = prev.role == "admin"
  if was_admin then
    local other
    other, err = other_admin_exists(oid)
    if other == nil then return nil, err end
    if not other then return nil, "last_admin" end
  end
  local n
  n, err = coll():delete_one({ _id = oid })
  if not n then return nil, err end
  if n == 0 then return nil, "not_found" end
  if was_admin then
    local left
    left, err = admins_left()
    if left == 0 then
      -- Same scheme as update: the deletion left no admin, so the document comes back as it was.
      local _, ierr = coll():insert_one(prev)
      if ierr then
        log.error("restoring the last admin " .. id_hex .. " failed: " .. ierr)
      end
      return nil, "last_admin"
    elseif not left then
      log.warn("could not re-count admins after deleting " .. id_hex .. ": " .. tostring(err))
    end
  end
  return true
end

-- ---------------------------------------------------------------------------------------------
-- Start-up and migration (used by lib/setup.lua)

-- ensure_index() -> true | nil, err ("duplicate_key" when existing documents collide)
function M.ensure_index()
  return coll():create_index({ { "username_lc", 1 } }, { unique = true })
end

-- count_admins() -> n | nil, err
M.count_admins = admins_left

-- The update that brings one stored document up to luahost's shape, or nil when it already has
-- it. Pure, so the rules are testable on their own: fill username_lc (derived, so a stale copy is
-- corrected too), token_version 0 and timestamps when missing, role "user" when missing, and move
-- the original service's hash field (FastAPI stored `hashed_password`, some versions `password`)
-- to password_hash.
function M.migration_update(doc, now)
  local set, unset = {}, {}
  if type(doc.username) == "string" and doc.username_lc ~= M.normalize(doc.username) then
    set.username_lc = M.normalize(doc.username)
  end
  if type(doc.token_version) ~= "number" then set.token_version = 0 end
  -- An ObjectId carries its creation second: the best record of when the account was made.
  if doc.created_at == nil or doc.created_at == NULL then
    set.created_at = (type(doc._id) == "userdata" and doc._id.date) and doc._id:date() or now
  end
  if doc.updated_at == nil or doc.updated_at == NULL then set.updated_at = now end
  if doc.role == nil or doc.role == NULL then set.role = "user" end
  for _, legacy in ipairs({ "hashed_password", "password" }) do
    local v = doc[legacy]
    if v ~= nil then
      local no_hash_yet = type(doc.password_hash) ~= "string" and set.password_hash == nil
      if no_hash_yet and type(v) == "string" then
        set.password_hash = v
      end
      -- Once a hash is in place the legacy copy is only a second secret to leak: drop it.
      if type(doc.password_hash) == "string" or set.password_hash ~= nil then unset[legacy] = "" end
    end
  end
  local update = {}
  if next(set) then update["$set"] = set end
  if next(unset) then update["$unset"] = unset end
  if not next(update) then return nil end
  return update
end

-- migrate() -> { ok, scanned, migrated, conflicts = {...} } | nil, err
-- Documents whose lower-cased names collide are listed and left untouched: which account keeps
-- the name is the operator's decision (rename or delete one, then run migrate again).
function M.migrate(dry_run)
  local docs, by_name, invalid = {}, {}, {}
  local filter, page = {}, 500
  while true do
    local batch, err = coll():find(filter, {
      projection = { _id = 1, username = 1, username_lc = 1, role = 1, token_version = 1,
                     created_at = 1, updated_at = 1, password_hash = 1, password = 1,
                     hashed_password = 1 },
      sort = { { "_id", 1 } }, limit = page,
    })
    if not batch then return nil, err end
    for _, d in ipairs(batch) do
      docs[#docs + 1] = d
      if type(d.username) == "string" then
        local lc = M.normalize(d.username)
        local group = by_name[lc]
        if not group then group = {}; by_name[lc] = group end
        group[#group + 1] = d
      else
        invalid[#invalid + 1] = d
      end
    end
    if #batch < page then break end
    filter = { _id = { ["$gt"] = batch[#batch]._id } }
  end

  local conflicts = {}
  for lc, group in pairs(by_name) do
    if #group > 1 then
      local ids, names = {}, {}
      for i, d in ipairs(group) do ids[i], names[i] = tostring(d._id), d.username end
      conflicts[#conflicts + 1] = { username_lc = lc, ids = json.array(ids),
                                    usernames = json.array(names) }
    end
  end
  for _, d in ipairs(invalid) do
    conflicts[#conflicts + 1] = { ids = json.array({ tostring(d._id) }),
                                  reason = "the document has no username string" }
  end
  table.sort(conflicts, function(a, b)
    return (a.username_lc or "") .. a.ids[1] < (b.username_lc or "") .. b.ids[1]
  end)

  local now, migrated = mongo.now(), 0
  for _, d in ipairs(docs) do
    local group = type(d.username) == "string" and by_name[M.normalize(d.username)]
    if group and #group == 1 then
      local update = M.migration_update(d, now)
      if update then
        if not dry_run then
          local matched, err = coll():update_one({ _id = d._id }, update)
          if not matched then return nil, err end
        end
        migrated = migrated + 1
      end
    end
  end
  return { ok = #conflicts == 0, scanned = #docs, migrated = migrated, dry_run = dry_run,
           conflicts = json.array(conflicts) }
end

return M
