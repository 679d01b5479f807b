-- lib/users.lua: the user records, and the only module that talks to the users collection.
--
-- Owns: the document shape (docs/architecture.md, section 9: _id, username, username_lc, username_skel,
-- password_hash, userage, role, token_version, created_at, updated_at), the projection that keeps
-- password hashes inside the database layer, the public form of a user, name identity (below), the
-- list query (escaped substring filter, whitelisted sort), password checks and re-hashing, and the
-- "at least one admin" rule (an atomic guard, below).
--
-- Name identity (docs/operations.md tells the operator's side). A name is stored as typed, in NFC;
-- username_lc holds its NFKC_Casefold key (what create, rename and login compare) and
-- username_skel the UTS #39 confusable skeleton of that key. Uniqueness and look-ups are
-- primary-key properties on every backend: the `<users>_names` collection holds one document per
-- taken name, `{_id = skeleton, user = <user _id>, at = <reserved at>}`. Equal keys have equal
-- skeletons, so one document per skeleton makes both the key and the look-alike unique. A login
-- reads that document by _id, then the user by _id; an unknown name reads a fixed absent _id
-- instead, so every login costs two reads by _id and one hash (see by_id for FerretDB).
--
-- Without transactions the two collections are kept consistent by the write order: reserve the
-- name (insert; the _id decides races), write the user, release the old name (delete filtered by
-- the owner). A name document is valid while its user exists and carries that skeleton. A crash
-- between the steps leaves a reservation that is not valid: the next claim of the name takes it
-- over once it is older than RESERVATION_GRACE_MS (so a create still in progress is never taken).
--
-- Password hashes never leave this file: every read that serves a client uses PUBLIC (an inclusion
-- projection, so even fields this file does not know about stay in the database), and the few
-- reads that need the hash (login, migration) keep it in locals that are never returned.
--
-- Runtime outcomes are `nil, code`: "not_found", "username_taken", "last_admin",
-- "bad_credentials", "weak_password" (the hashing scheme refused the password), "bad_username"
-- (with the identity rule as a third value; lib/schemas.lua answers these with 422 before a
-- handler runs), or a binding's code ("unavailable", "timeout", "overloaded", "error",
-- "lock_timeout") that the caller passes on. "unavailable" also answers an update or delete
-- whose user kept changing role under it through three attempts.

local log = require "luahost.log"
local json = require "luahost.json"
local schemas = require "lib.schemas"
local settings = require "lib.settings"
local mongo = require "luahost.mongo"
local password = require "luahost.password"
local unicode = require "luahost.unicode"
local dblock_mod = require "lib.dblock"

-- Locks as this module uses them: contention on a lock is "overloaded" to callers (503 with
-- Retry-After), like a full database queue.
local dblock = {}
function dblock.with(c, name, fn)
  local function pass(a, ...)
    if a == nil and (...) == "lock_timeout" then return nil, "overloaded" end
    return a, ...
  end
  return pass(dblock_mod.with(c, name, fn))
end

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

-- The stored field of each name a query may sort by (lib/schemas.lua owns that list): names sort by
-- their caseless key so "alice" and "Bob" come out in the order a person expects. Nothing else
-- can be sorted on.
local SORT_FIELDS = {}
for _, name in ipairs(schemas.SORT_FIELDS) do
  SORT_FIELDS[name] = name == "username" and "username_lc" or name
end

-- Every setting this module reads, from the one place that owns their defaults and ranges.
local function setting(key)
  return settings.get(key)
end

-- How old a reservation without a matching user must be before another claim may take it over:
-- longer than any create or rename can take (hashing plus a few database timeouts).
local RESERVATION_GRACE_MS = 120000

-- Collections, opened at first use (not at load: --check has no database). names and meta are
-- named after the users collection so that one setting moves them all.
local colls = {}
local function collection(suffix)
  local c = colls[suffix]
  if not c then
    c = mongo.collection(setting("users_collection") .. suffix)
    colls[suffix] = c
  end
  return c
end
local function coll() return collection("") end
local function names() return collection("_names") end
local function meta() return collection("_meta") end

-- The _id a login of an unknown name reads, so it costs what a known name costs.
local ABSENT_ID_HEX = "000000000000000000000000"

-- ---------------------------------------------------------------------------------------------
-- Pure helpers (covered by tests/spec/users_lib_spec.lua)

-- The caseless identity of a username: its NFKC_Casefold key ("Émile" and "émile", "STRASSE" and
-- "straße", fullwidth "ｂｏｂ" and "bob", NFD and NFC spellings are one name). Text ICU cannot
-- read (ill-formed UTF-8) falls back to ASCII lower-casing: such a name can never be stored, so
-- the fallback only serves searches and logins that find nothing.
function M.normalize(name)
  return unicode.key(name) or lower(name)
end

-- identity(name) -> {name = NFC, key = NFKC_Casefold, skeleton} | nil, reason
-- The identity rules (lua-bindings/unicode.h) decide which names may be stored; `reason` is the
-- binding's code (lib/schemas.lua words the 422 for each).
function M.identity(name)
  if type(name) ~= "string" then return nil, "error" end
  local nfc, err = unicode.nfc(name)
  if not nfc then return nil, err end
  local ok, why = unicode.check_name(nfc)
  if not ok then return nil, why end
  local key = unicode.key(nfc)
  local skel = key and unicode.skeleton(key)
  if not skel then return nil, "error" end
  return { name = nfc, key = key, skeleton = skel }
end

-- The key and skeleton a login looks up (no identity rules: a refused name simply finds nobody).
local function lookup_key(name)
  local key = unicode.key(name)
  if not key then return nil end
  return key, unicode.skeleton(key)
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

-- ---------------------------------------------------------------------------------------------
-- Name reservations (the `<users>_names` collection; see the header)

local function now_ms()
  return mongo.now():ms()
end

local legacy_padding

-- Whether a name document may be taken over: its user is gone or carries another name, and it is
-- older than the grace period (a create or rename still in progress is never taken).
-- -> true | false | nil, err
local function is_stale(holder)
  local u, err = coll():find_one({ _id = holder.user }, { projection = { username_skel = 1 } })
  if err then return nil, err end
  if u and u.username_skel == holder._id then return false end
  local at = holder.at
  local age = (type(at) == "userdata" and at.ms) and (now_ms() - at:ms()) or math.huge
  return age > RESERVATION_GRACE_MS
end

-- reserve(skeleton, oid) -> true | nil, "username_taken" | nil, err
-- Inserting the document is the claim: of concurrent claims on every host exactly one insert
-- wins. A document this user already holds counts as reserved (a rename back, a retry).
local function reserve(skel, oid)
  for _ = 1, 3 do
    local _, err = names():insert_one({ _id = skel, user = oid, at = mongo.now() })
    if not err then return true end
    if err ~= "duplicate_key" then return nil, err end
    local holder
    holder, err = names():find_one({ _id = skel })
    if err then return nil, err end
    if holder then
      if holder.user == oid then return true end
      local stale
      stale, err = is_stale(holder)
      if stale == nil then return nil, err end
      if not stale then return nil, "username_taken" end
      -- Filtered on the holder and its time: a concurrent take-over of the same stale document
      -- deletes nothing here, and its insert then races ours on the _id.
      local n
      n, err = names():delete_one({ _id = skel, user = holder.user, at = holder.at })
      if not n then return nil, err end
      if n == 1 then
        log.warn("took over a stale username reservation held by " .. tostring(holder.user))
      end
    end
  end
  return nil, "username_taken"
end

-- release(skeleton, oid): gives a name back. A failure only leaves a stale reservation, which the
-- next claim recovers, so it is logged rather than reported.
local function release(skel, oid)
  if type(skel) ~= "string" then return end
  local n, err = names():delete_one({ _id = skel, user = oid })
  if not n then
    log.warn("releasing a username reservation of " .. tostring(oid) .. " failed: " ..
             tostring(err) .. " (recovered by the next claim of that name)")
  end
end

-- holds(skeleton, oid) -> true | false | nil, err: whether oid still holds the name.
local function holds(skel, oid)
  local holder, err = names():find_one({ _id = skel }, { projection = { user = 1 } })
  if err then return nil, err end
  return holder ~= nil and holder.user == oid
end

-- ---------------------------------------------------------------------------------------------
-- The admin guard: `<users>_meta` holds {_id = "admins", n}, a count that never exceeds the
-- number of admins. Taking an admin away first decrements it, only while it is above 1, then
-- demotes or deletes; adding an admin promotes first, then increments. So n <= admins at every
-- moment, and a successful decrement proves another admin remains, whatever runs concurrently on
-- any host. Each step on n runs under the lock "admins" (lib/dblock.lua: FerretDB's updates are
-- not atomic), and every role transition of a user under the lock "user:<id>", so the role read
-- and the role written agree. A crash between the two steps leaves n too low, which can only
-- refuse a later demotion (409): `luahost migrate` recounts it. Nothing is ever undone.

local GUARD_ID = "admins"

local function admins_left()
  return coll():count_documents({ role = "admin" })
end

-- ensure_admin_guard() -> true | nil, err: creates the guard from a count when it is missing.
function M.ensure_admin_guard(recount)
  local n, err = admins_left()
  if not n then return nil, err end
  if recount then
    local matched
    matched, err = meta():update_one({ _id = GUARD_ID }, { ["$set"] = { n = n } })
    if not matched then return nil, err end
    if matched > 0 then return true end
  end
  local _
  _, err = meta():insert_one({ _id = GUARD_ID, n = n })
  if err and err ~= "duplicate_key" then return nil, err end
  return true
end

-- take_admin() -> true | nil, "last_admin" | nil, err
local function take_admin()
  for _ = 1, 2 do
    local res, err = dblock.with(meta(), GUARD_ID, function()
      -- One conditional update: atomic where updates are, and under the lock where they are not.
      local doc, gerr = meta():find_one_and_update({ _id = GUARD_ID, n = { ["$gt"] = 1 } },
                                                   { ["$inc"] = { n = -1 } })
      if gerr then return nil, gerr end
      if doc then return "taken" end
      local guard
      guard, gerr = meta():find_one({ _id = GUARD_ID })
      if gerr then return nil, gerr end
      if guard then return nil, "last_admin" end
      return "missing"
    end)
    if res == "taken" then return true end
    if not res then return nil, err end
    -- The guard is missing (a database that never ran this version's start-up): count once.
    local ok
    ok, err = M.ensure_admin_guard()
    if not ok then return nil, err end
  end
  return nil, "last_admin"
end

-- give_admin(): one more admin exists (after a promotion, or a take that was not used).
local function give_admin()
  local ok, err = dblock.with(meta(), GUARD_ID, function()
    return meta():update_one({ _id = GUARD_ID }, { ["$inc"] = { n = 1 } })
  end)
  if not ok then
    -- n stays lower than the admins: the safe side; migrate recounts.
    log.warn("incrementing the admin guard failed: " .. tostring(err))
  end
end

-- ---------------------------------------------------------------------------------------------
-- Passwords

-- check_password(username, pw) -> principal | nil, "bad_credentials" | nil, err
-- Every login costs two primary-key reads and one hash verification: the name document, then the
-- user (a fixed absent _id when the name is unknown), then the user's hash or the dummy one. An
-- unknown user, a look-alike of another user, a user without a usable hash and a wrong password
-- give the same answer at the same cost, so timing does not tell which names exist.
-- Legacy bcrypt hashes (the original service's, cost 12: about ten times an argon2id check) would
-- let timing tell a not-yet-upgraded account from any other name. Wrapping them (argon2id over
-- the bcrypt hash) cannot help: checking a password still needs the bcrypt computation. So cost
-- is padded instead: `luahost migrate` records one remaining bcrypt hash in `<users>_meta`
-- ({_id = "legacy_bcrypt", hash}) while any remain; then every login verifies both kinds, a
-- bcrypt account also the dummy argon2id hash, every other login also that recorded bcrypt hash
-- (its answer ignored). Each worker re-reads the record once a minute. Once the bcrypt users
-- have logged in (their hashes are replaced then), the next migrate removes the record.
local PADDING_TTL_MS = 60000
local padding = { hash = nil, read_ms = -math.huge }

-- legacy_padding(is_legacy) -> bcrypt hash to verify for equal cost | nil
function legacy_padding(is_legacy)
  local now = now_ms()
  if now - padding.read_ms > PADDING_TTL_MS then
    local doc, err = meta():find_one({ _id = "legacy_bcrypt" })
    if not err then
      padding.hash = doc and type(doc.hash) == "string" and doc.hash or nil
      padding.read_ms = now
    end
  end
  if is_legacy then return nil end
  return padding.hash
end

-- by_id(collection, id, projection) -> doc | nil | nil, err: a read by _id whose cost does not
-- depend on where the document is. On MongoDB the _id index answers. FerretDB 1.24 (SQLite)
-- evaluates _id equality in SQL without using an index: a find_one stops at the first match, so
-- an early document answers faster than a late one and an absent one costs a full pass
-- (measured: 1 ms, 13 ms, 14 ms among 5,000). Asking for up to two documents makes every read
-- one full pass there, whatever the name, and changes nothing where an index answers.
local function by_id(c, id, projection)
  local docs, err = c:find({ _id = id }, { projection = projection, limit = 2 })
  if not docs then return nil, err end
  return docs[1]
end

function M.check_password(username, pw)
  local key, skel = lookup_key(username)
  local holder, err
  -- Text that cannot be a key still costs the same read (of a skeleton no name has).
  holder, err = by_id(names(), skel or "", { user = 1 })
  if err then return nil, err end
  local doc
  doc, err = by_id(coll(), holder and holder.user or mongo.objectid(ABSENT_ID_HEX), {
    _id = 1, username = 1, username_lc = 1, userage = 1, role = 1, token_version = 1,
    created_at = 1, updated_at = 1, password_hash = 1,
  })
  if err then return nil, err end
  -- A look-alike (same skeleton, other key) is not this user.
  if doc and doc.username_lc ~= key then doc = nil end
  local hash = doc and doc.password_hash
  local legacy = type(hash) == "string" and hash:sub(1, 2) == "$2"
  -- Equal cost for everyone while bcrypt accounts of the original service remain (see
  -- legacy_padding): the other kind of hash is verified too and its answer ignored.
  local pad = legacy_padding(legacy)
  if type(hash) ~= "string" then
    local _, derr = password.verify_dummy(pw)
    if pad then password.verify(pw, pad) end
    if derr and derr ~= "bad_value" then return nil, derr end
    return nil, "bad_credentials"
  end
  local ok, verr = password.verify(pw, hash)
  if legacy then password.verify_dummy(pw) elseif pad then password.verify(pw, pad) end
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

-- Whether a failed write may still have been applied: the server may have done it and the answer
-- been lost (a timeout, a dropped connection, or an error the binding cannot name). Only answers
-- that say the write was refused (duplicate_key, bad_value) or never sent (overloaded) are
-- definitive. After an ambiguous failure nothing the write would have consumed is given back:
-- an admin count kept one lower, or a name reservation left to go stale, is the safe side.
local DEFINITE = { duplicate_key = true, bad_value = true, overloaded = true }
local function ambiguous(err)
  return err ~= nil and not DEFINITE[err]
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
-- "bad_username" (with the reason as a third value) when the name breaks the identity rules.
function M.create(fields)
  local ident, why = M.identity(fields.username)
  if not ident then return nil, "bad_username", why end
  local oid = mongo.objectid()
  -- The reservation comes first: a taken name costs no hash, and it decides races across hosts.
  local ok, err = reserve(ident.skeleton, oid)
  if not ok then return nil, err end
  local hash
  hash, err = hash_password(fields.password)
  if not hash then
    release(ident.skeleton, oid)
    return nil, err
  end
  local now = mongo.now()
  local doc = {
    _id = oid, username = ident.name, username_lc = ident.key, username_skel = ident.skeleton,
    password_hash = hash, userage = fields.userage, role = fields.role or "user",
    token_version = 0, created_at = now, updated_at = now,
  }
  local _
  _, err = coll():insert_one(doc)
  if err then
    if ambiguous(err) then
      -- The user may exist: keep its name reserved (a stale claim is recovered after the grace).
      log.warn("creating a user failed ambiguously (" .. tostring(err) .. "); its username " ..
               "stays reserved")
    else
      release(ident.skeleton, oid)
    end
    if err == "duplicate_key" then return nil, "username_taken" end
    return nil, err
  end
  -- Still ours? Only a stall longer than the grace period could have lost the reservation; then
  -- the other claim wins and this account is withdrawn.
  local still
  still, err = holds(ident.skeleton, oid)
  if still == false then
    coll():delete_one({ _id = oid })
    return nil, "username_taken"
  elseif still == nil then
    log.warn("could not confirm the reservation of a new user: " .. tostring(err))
  end
  if doc.role == "admin" then give_admin() end
  doc.password_hash, doc.username_lc, doc.username_skel = nil, nil, nil
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

-- What update and delete read first: enough to answer 404, see a role transition and know the
-- name to release.
local PREV = { _id = 1, role = 1, username = 1, username_lc = 1, username_skel = 1 }

-- The role condition a write that sets `role` (or deletes) pins, so that the guard's step and
-- the write agree on the transition even when another host changes the role in between.
local function role_filter(prev_role)
  if prev_role == "admin" then return "admin" end
  return { ["$ne"] = "admin" }
end

-- update(id_hex, changes) -> public doc | nil, code ("bad_username" with a reason, too)
-- changes: validated {username?, password?, userage?, role?}. A new password bumps the token
-- version (older tokens fail); a new username is reserved before the write and the old one
-- released after it.
local update_locked

function M.update(id_hex, changes)
  local oid = oid_of(id_hex)
  if not oid then return nil, "not_found" end
  local ident, why
  if changes.username ~= nil then
    ident, why = M.identity(changes.username)
    if not ident then return nil, "bad_username", why end
  end
  if changes.role == nil then return update_locked(oid, changes, ident) end
  return dblock.with(meta(), "user:" .. id_hex, function()
    return update_locked(oid, changes, ident)
  end)
end

-- The update itself; a change of role runs under the user's lock (see the admin guard).
function update_locked(oid, changes, ident)
  local hash, err
  for _ = 1, 3 do
    local prev
    prev, err = coll():find_one({ _id = oid }, { projection = PREV })
    if err then return nil, err end
    if not prev then return nil, "not_found" end

    local set = { updated_at = mongo.now() }
    local update = { ["$set"] = set }
    local filter = { _id = oid }
    local reserved = false
    if ident then
      if ident.skeleton ~= prev.username_skel then
        local ok
        ok, err = reserve(ident.skeleton, oid)
        if not ok then return nil, err end
        reserved = true
      end
      set.username, set.username_lc, set.username_skel = ident.name, ident.key, ident.skeleton
    end
    if changes.userage ~= nil then set.userage = changes.userage end
    local demotes, promotes = false, false
    if changes.role ~= nil then
      set.role = changes.role
      filter.role = role_filter(prev.role)
      demotes = prev.role == "admin" and changes.role ~= "admin"
      promotes = prev.role ~= "admin" and changes.role == "admin"
    end
    if changes.password ~= nil then
      if not hash then
        hash, err = hash_password(changes.password)
        if not hash then
          if reserved then release(ident.skeleton, oid) end
          return nil, err
        end
      end
      set.password_hash = hash
      update["$inc"] = { token_version = 1 }
    end
    if demotes then
      local ok
      ok, err = take_admin()
      if not ok then
        if reserved then release(ident.skeleton, oid) end
        return nil, err
      end
    end

    local doc
    doc, err = coll():find_one_and_update(filter, update,
                                          { projection = PUBLIC, unique_fields = { "username_lc" } })
    if doc then
      if promotes then give_admin() end
      if reserved then
        -- Still ours? As in create: only a stall longer than the grace period could have lost
        -- the new name's reservation; then the other claim wins and the old name (still held)
        -- is written back. The rest of the change stays applied.
        local still, herr = holds(ident.skeleton, oid)
        if still == false then
          local _, rerr = coll():find_one_and_update({ _id = oid, username_skel = ident.skeleton },
            { ["$set"] = { username = prev.username, username_lc = prev.username_lc,
                           username_skel = prev.username_skel } })
          if rerr then
            log.warn("writing back the username of " .. tostring(oid) .. " failed: " ..
                     tostring(rerr))
          end
          return nil, "username_taken"
        elseif still == nil then
          log.warn("could not confirm the reservation of a new username: " .. tostring(herr))
        end
      end
      if ident and prev.username_skel ~= ident.skeleton then
        release(prev.username_skel, oid)
      end
      return doc
    end
    if ambiguous(err) then
      -- The write may have been applied: keep the admin count lowered and the new name held.
      log.warn("updating a user failed ambiguously (" .. tostring(err) .. "); " ..
               (demotes and "the admin count stays lowered" or "nothing is given back"))
      return nil, err
    end
    -- Nothing written: give back what this attempt took.
    if demotes then give_admin() end
    if reserved then release(ident.skeleton, oid) end
    if err then
      if err == "duplicate_key" then return nil, "username_taken" end
      return nil, err
    end
    -- Deleted, or the role changed since the read: read again and decide again.
  end
  return nil, "unavailable"
end

-- delete(id_hex) -> true | nil, code (under the user's lock: a deletion ends any role)
local delete_locked

function M.delete(id_hex)
  local oid = oid_of(id_hex)
  if not oid then return nil, "not_found" end
  return dblock.with(meta(), "user:" .. id_hex, function() return delete_locked(oid) end)
end

function delete_locked(oid)
  for _ = 1, 3 do
    local prev, err = coll():find_one({ _id = oid }, { projection = PREV })
    if err then return nil, err end
    if not prev then return nil, "not_found" end
    local was_admin = prev.role == "admin"
    if was_admin then
      local ok
      ok, err = take_admin()
      if not ok then return nil, err end
    end
    local n
    n, err = coll():delete_one({ _id = oid, role = role_filter(prev.role) })
    if n == 1 then
      -- The user first, then the name: a crash in between leaves a stale reservation.
      release(prev.username_skel, oid)
      return true
    end
    if not n and ambiguous(err) then
      -- The user may be gone: keep the admin count lowered (the safe side; migrate recounts).
      log.warn("deleting a user failed ambiguously (" .. tostring(err) .. ")" ..
               (was_admin and "; the admin count stays lowered" or ""))
      return nil, err
    end
    if was_admin then give_admin() end
    if not n then return nil, err end
    -- Deleted meanwhile, or its role changed: read again.
  end
  return nil, "unavailable"
end

-- ---------------------------------------------------------------------------------------------
-- Start-up and migration (used by lib/setup.lua)

-- ensure_index() -> true | nil, err ("duplicate_key" when existing documents collide). The unique
-- index on username_lc is a second line of defence behind the name documents.
function M.ensure_index()
  return coll():create_index({ { "username_lc", 1 } }, { unique = true })
end

-- needs_migration() -> false | true | nil, err: whether some user has no skeleton yet (documents
-- written before the name documents existed, or by the original service).
function M.needs_migration()
  local doc, err = coll():find_one({ username_skel = { ["$exists"] = false } },
                                   { projection = { _id = 1 } })
  if err then return nil, err end
  return doc ~= nil
end

-- count_admins() -> n | nil, err
M.count_admins = admins_left

-- The stored identity of a name as migration computes it: NFC name, key and skeleton (no identity
-- rules: an account made under older rules keeps its name). nil when the text is not UTF-8.
local function stored_identity(name)
  if type(name) ~= "string" then return nil end
  local nfc = unicode.nfc(name)
  local key = nfc and unicode.key(nfc)
  local skel = key and unicode.skeleton(key)
  if not skel then return nil end
  return { name = nfc, key = key, skeleton = skel }
end

-- The update that brings one stored document up to luahost's shape, or nil when it already has
-- it. Pure, so the rules are testable on their own: the name in NFC with its key and skeleton
-- (derived, so stale copies are corrected too), token_version 0 and timestamps when missing, role
-- "user" when missing, and the original service's hash field (FastAPI stored `hashed_password`,
-- some versions `password`) moved to password_hash.
function M.migration_update(doc, now, ident)
  local set, unset = {}, {}
  ident = ident or stored_identity(doc.username)
  if ident then
    if doc.username ~= ident.name then set.username = ident.name end
    if doc.username_lc ~= ident.key then set.username_lc = ident.key end
    if doc.username_skel ~= ident.skeleton then set.username_skel = ident.skeleton end
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

-- Reads a whole collection in _id order, page by page.
local function scan(c, projection, each)
  local filter, page = {}, 500
  while true do
    local batch, err = c:find(filter, { projection = projection, sort = { { "_id", 1 } },
                                        limit = page })
    if not batch then return nil, err end
    for _, d in ipairs(batch) do each(d) end
    if #batch < page then return true end
    filter = { _id = { ["$gt"] = batch[#batch]._id } }
  end
end

-- Makes the name documents match the users: one per user, keyed by its skeleton; documents of
-- users that are gone or renamed are removed. Run by migrate, with the hosts stopped.
-- -> { kept, created, removed } | nil, err
local function rebuild_names(owner_of)
  local stats, seen, doomed = { kept = 0, created = 0, removed = 0 }, {}, {}
  local ok, err = scan(names(), { _id = 1, user = 1 }, function(d)
    local owner = owner_of[d._id]
    if owner ~= nil and owner == d.user then
      seen[d._id] = true
      stats.kept = stats.kept + 1
    else
      doomed[#doomed + 1] = d
    end
  end)
  if not ok then return nil, err end
  for _, d in ipairs(doomed) do
    local n
    n, err = names():delete_one({ _id = d._id, user = d.user })
    if not n then return nil, err end
    stats.removed = stats.removed + n
  end
  local now = mongo.now()
  for skel, oid in pairs(owner_of) do
    if not seen[skel] then
      local _
      _, err = names():insert_one({ _id = skel, user = oid, at = now })
      if err then return nil, err end
      stats.created = stats.created + 1
    end
  end
  return stats
end

-- migrate() -> { ok, scanned, migrated, conflicts = {...}, names, rule_warnings } | nil, err
-- Documents whose names collide (same key, or look-alikes with the same skeleton) are listed and
-- left untouched: which account keeps the name is the operator's decision (rename or delete one,
-- then run migrate again). Names that today's identity rules would refuse (a trailing space, a
-- zero-width character) keep working and are listed as rule_warnings.
function M.migrate(dry_run)
  local docs, by_skel, invalid, warnings, ident_of = {}, {}, {}, {}, {}
  local ok, err = scan(coll(), {
    _id = 1, username = 1, username_lc = 1, username_skel = 1, role = 1, token_version = 1,
    created_at = 1, updated_at = 1, password_hash = 1, password = 1, hashed_password = 1,
  }, function(d)
    docs[#docs + 1] = d
    local ident = stored_identity(d.username)
    ident_of[d] = ident
    if ident then
      local group = by_skel[ident.skeleton]
      if not group then group = {}; by_skel[ident.skeleton] = group end
      group[#group + 1] = d
      local fine, why = unicode.check_name(ident.name)
      if not fine then
        warnings[#warnings + 1] = { id = tostring(d._id), username = d.username, reason = why }
      end
    else
      invalid[#invalid + 1] = d
    end
  end)
  if not ok then return nil, err end

  local conflicts, owner_of = {}, {}
  for skel, group in pairs(by_skel) do
    if #group > 1 then
      local ids, list, keys, same = {}, {}, {}, true
      for i, d in ipairs(group) do
        ids[i], list[i] = tostring(d._id), d.username
        keys[i] = ident_of[d].key
        if keys[i] ~= keys[1] then same = false end
      end
      conflicts[#conflicts + 1] = {
        username_lc = same and keys[1] or nil, skeleton = skel, ids = json.array(ids),
        usernames = json.array(list),
        reason = same and "the names are equal ignoring case and compatibility forms"
                      or "the names look alike (same confusable skeleton)",
      }
    else
      owner_of[skel] = group[1]._id
    end
  end
  for _, d in ipairs(invalid) do
    conflicts[#conflicts + 1] = { ids = json.array({ tostring(d._id) }),
                                  reason = "the document has no username string in UTF-8" }
  end
  table.sort(conflicts, function(a, b)
    return (a.username_lc or a.skeleton or "") .. a.ids[1] <
           (b.username_lc or b.skeleton or "") .. b.ids[1]
  end)
  table.sort(warnings, function(a, b) return a.id < b.id end)

  local now, migrated = mongo.now(), 0
  for _, d in ipairs(docs) do
    local ident = ident_of[d]
    local group = ident and by_skel[ident.skeleton]
    if group and #group == 1 then
      local update = M.migration_update(d, now, ident)
      if update then
        if not dry_run then
          local matched
          matched, err = coll():update_one({ _id = d._id }, update)
          if not matched then return nil, err end
        end
        migrated = migrated + 1
      end
    end
  end
  local result = { ok = #conflicts == 0, scanned = #docs, migrated = migrated, dry_run = dry_run,
                   conflicts = json.array(conflicts), rule_warnings = json.array(warnings) }
  if not dry_run then
    local stats
    stats, err = rebuild_names(owner_of)
    if not stats then return nil, err end
    result.names = stats
    -- One remaining bcrypt hash for login cost padding (see legacy_padding), or none.
    local sample
    for _, d in ipairs(docs) do
      local h = type(d.password_hash) == "string" and d.password_hash
                or (type(d.hashed_password) == "string" and d.hashed_password)
                or (type(d.password) == "string" and d.password)
      if h and h:sub(1, 2) == "$2" then sample = h; break end
    end
    if sample then
      local _, perr = meta():insert_one({ _id = "legacy_bcrypt", hash = sample })
      if perr == "duplicate_key" then
        local matched
        matched, perr = meta():update_one({ _id = "legacy_bcrypt" }, { ["$set"] = { hash = sample } })
        if matched then perr = nil end
      end
      if perr then return nil, perr end
    else
      local _, perr = meta():delete_one({ _id = "legacy_bcrypt" })
      if perr then return nil, perr end
    end
    result.legacy_bcrypt = sample ~= nil
    -- Offline, so a recount cannot race a demotion in flight.
    ok, err = M.ensure_admin_guard(true)
    if not ok then return nil, err end
  end
  return result
end

return M
