-- lib/throttle.lua: brute-force defence for POST /login, for one host or a fleet.
--
-- Owns: which login attempts are counted, where, and when a login is refused. Attempts are counted
-- in three fixed windows:
--   per (client address, username)  guessing one account from one place   (default 5)
--   per username                    one account from many places          (default 20)
--   per client address              many accounts from one place          (default 100)
-- The username is its NFKC_Casefold key, so every spelling of one account shares its counters.
--
-- Two stores (setting throttle_store; docs/operations.md):
--   "mongodb" (default): one document per key and window in the `login_attempts` collection,
--     `{_id = "<key>@<window number>", f, r, exp}` (failures, attempts in flight, window end),
--     windows aligned to the clock so every host agrees. An attempt RESERVES before any hash
--     work: one atomic upsert ($inc r) per counter (mongodb.reserve says when it is refused or
--     waits). A failure turns its reservation into a failure ($inc f 1, r -1); a success gives it
--     back and clears the (address, username) failures, so successes never count. N concurrent
--     wrong guesses on any number of hosts let at most the limit be checked. A host that dies
--     mid-attempt leaves r raised until the window ends (stricter, never looser). Old windows are
--     never read again (the window is part of the _id); they are deleted by a TTL index on exp
--     where the server has one, and by a sweep where it does not (feature-detected at start;
--     nothing depends on either).
--   "memory": the host's own counters (luahost.ratelimit), for a single host, with the same
--     protocol: reserve before the hash, a failure keeps its reservation, a success or abandon
--     gives it back (see memory_try), so concurrent guesses on one host let at most the limit be
--     checked.
--
-- Database outage (docs/operations.md): when the mongodb store cannot answer (unavailable,
-- timeout, overloaded), the attempt reserves on the memory store instead (logged), so the gate
-- never opens and nobody is locked out by the outage itself; the login then needs the users collection, which answers 503 with
-- Retry-After while the database is down. Counters kept in MongoDB survive the outage.

local core = require "luahost"
local log = require "luahost.log"
local metrics = require "luahost.metrics"
local mongo = require "luahost.mongo"
local ratelimit = require "luahost.ratelimit"
local dblock = require "lib.dblock"

local floor, max = math.floor, math.max

local M = {}

-- Every refusal (the 429 of POST /login) counts here: luahost_login_throttled_total on /metrics.
local throttled = metrics.counter("login_throttled_total",
                                  "Login attempts refused by the login throttle (429).")

-- Every setting this module reads, from the one place that owns their defaults and ranges.
local setting = require("lib.settings").get

-- Stored keys cap the username part; a long username is cut, which at worst makes two very long
-- names that share a prefix share a counter (stricter, never looser). The cut falls on a UTF-8
-- character boundary: a key is a string _id, and a split character would make it invalid UTF-8,
-- which the database binding refuses (the login would fail with 500).
local MAX_NAME_IN_KEY = 128

-- Outcomes that mean "the database did not answer", as opposed to a bug.
local OUTAGE = { unavailable = true, timeout = true, overloaded = true }

local attempts_coll
local function attempts()
  if not attempts_coll then attempts_coll = mongo.collection("login_attempts") end
  return attempts_coll
end

-- The three counter keys. The address comes first and never contains "|", so the pair key is
-- unambiguous whatever the username holds.
function M.keys(name_key, addr)
  local cut = MAX_NAME_IN_KEY
  -- Back up over continuation bytes (10xxxxxx) so the cut never splits a character.
  while cut > 0 and cut < #name_key do
    local b = name_key:byte(cut + 1)
    if b < 0x80 or b >= 0xC0 then break end
    cut = cut - 1
  end
  local name = name_key:sub(1, cut)
  if addr == nil or addr == "" then addr = "-" end
  return "login:pair:" .. addr .. "|" .. name, "login:user:" .. name, "login:addr:" .. addr
end

local function limits()
  return setting("login_max_per_pair"), setting("login_max_per_user"),
         setting("login_max_per_addr"), setting("login_window_s")
end

-- The window a moment (in seconds) falls in, and when it ends.
function M.window(now_s, window_s)
  local w = floor(now_s / window_s)
  return w, (w + 1) * window_s
end

-- ---------------------------------------------------------------------------------------------
-- The memory store

local memory = {}

-- How long an attempt waits for attempts in flight before it is refused, and how often it looks.
-- The wait doubles from POLL_MS to POLL_MAX_MS, so a crowd of waiters does not crowd the database.
local QUEUE_MS, POLL_MS, POLL_MAX_MS = 10000, 20, 240

-- The memory store follows the mongodb store's protocol with the host's counters, which can only
-- grow (ratelimit.incr) or be forgotten: per counter and clock-aligned window, `:a` counts
-- reservations, `:g` the reservations given back and `:f` the failures. Reservations held or
-- turned into failures are a - g. A reservation increments a and is kept only when a - g (its
-- own included) stays within the limit, else it is given back at once: every reservation checks
-- all earlier ones, so at most the limit are ever being checked or failed, whatever runs
-- concurrently on the host's workers.
local function mkeys(k, w)
  local base = k .. "@" .. w
  return base .. ":a", base .. ":g", base .. ":f"
end

local function give_back(held, window)
  for _, k in ipairs(held) do
    local _, g = mkeys(k, held.w)
    ratelimit.incr(g, window)
  end
end

-- One try -> "ok", held | "locked" | "busy", retry
local function memory_try(name_key, addr, now_s)
  local pair_max, user_max, addr_max, window = limits()
  local w, ends = M.window(now_s, window)
  local retry = max(1, math.ceil(ends - now_s))
  local pk, uk, ak = M.keys(name_key, addr)
  local held = { w = w }
  for _, l in ipairs({ { pk, pair_max }, { uk, user_max }, { ak, addr_max } }) do
    local a, g, f = mkeys(l[1], w)
    if ratelimit.count(f) >= l[2] then
      give_back(held, window)
      return "locked", retry
    end
    local n = ratelimit.incr(a, window)
    held[#held + 1] = l[1]
    if n - ratelimit.count(g) > l[2] then
      give_back(held, window)
      return "busy", retry
    end
  end
  return "ok", held
end

function memory.reserve(name_key, addr)
  local started, pause = mongo.now():ms(), POLL_MS
  while true do
    local now_ms = mongo.now():ms()
    local state, held = memory_try(name_key, addr, now_ms / 1000)
    if state == "ok" then
      return true, { store = "memory", held = held, window = setting("login_window_s") }
    end
    if state == "locked" then return false, held end
    if now_ms - started > QUEUE_MS then return false, 1 end
    core.sleep(pause + math.random(0, pause))
    pause = math.min(pause * 2, POLL_MAX_MS)
  end
end

function memory.failed(t)
  for _, k in ipairs(t.held) do
    local _, _, f = mkeys(k, t.held.w)
    ratelimit.incr(f, t.window)
  end
end

function memory.succeeded(t)
  -- The pair's failures are forgiven: each is given back, then forgotten.
  local _, g, f = mkeys(t.held[1], t.held.w)
  for _ = 1, ratelimit.count(f) do ratelimit.incr(g, t.window) end
  ratelimit.reset(f)
  give_back(t.held, t.window)
end

function memory.abandon(t)
  give_back(t.held, t.window)
end

-- ---------------------------------------------------------------------------------------------
-- The mongodb store

local mongodb = {}

-- One upsert of a counter document ($inc), returning the document after it. Atomic on MongoDB;
-- the lock makes it so on FerretDB too (lib/dblock.lua says why). A concurrent first upsert of
-- the same _id can lose the insert race: MongoDB answers duplicate_key, SecantusDB no document;
-- the retry then finds the document.
local function upsert(id, inc, exp)
  local doc, err
  for _ = 1, 3 do
    doc, err = attempts():find_one_and_update({ _id = id },
      { ["$inc"] = inc, ["$set"] = { exp = exp } }, { upsert = true })
    if doc then return doc end
    if err and err ~= "duplicate_key" then return nil, err end
  end
  return nil, err or "error"
end

local function bump(id, inc, exp)
  return dblock.with(attempts(), id, function() return upsert(id, inc, exp) end)
end

-- A lock_timeout is contention, not an outage: the count is tried again (up to three more waits
-- for the lock), since a failure that is never counted loosens the limit for everyone (fifty
-- concurrent guesses on a loaded FerretDB checked 35 passwords against a user limit of 20).
local BUMP_TRIES = 4
M.BUMP_TRIES = BUMP_TRIES

local function each_bump(ids, inc, exp, what)
  for _, id in ipairs(ids) do
    local doc, err
    for _ = 1, BUMP_TRIES do
      doc, err = bump(id, inc, exp)
      if doc or err ~= "lock_timeout" then break end
    end
    if not doc then log.warn(what .. " failed: " .. tostring(err)) end
  end
end

local sweep = { ttl = false, next_s = 0 }

-- Deletes up to 100 expired counter documents, at most once a minute per worker (once an hour
-- where a TTL index does the work), from the login path: there is no other caller.
local function maybe_sweep(now_s)
  if now_s < sweep.next_s then return end
  sweep.next_s = now_s + (sweep.ttl and 3600 or 60)
  local old, err = attempts():find({ exp = { ["$lt"] = mongo.date(floor(now_s - 1) * 1000) } },
                                   { projection = { _id = 1 }, limit = 100 })
  if not old then
    log.warn("sweeping login counters failed: " .. tostring(err))
    return
  end
  for _, d in ipairs(old) do attempts():delete_one({ _id = d._id }) end
end

-- Where a counter stands for one more attempt: "ok", "busy" (failures plus attempts in flight
-- reach the limit) or "locked" (failures alone do).
local function standing(doc, limit, extra)
  local f, r = doc and doc.f or 0, (doc and doc.r or 0) + extra
  if f >= limit then return "locked" end
  if f + r > limit then return "busy" end
  return "ok"
end

-- One try: reserves r on the three counters, in order, stopping at the first that refuses (a
-- plain read first, so a refused attempt writes nothing). -> "ok" | "locked" | "busy" (nothing
-- kept), ids, exp, retry | nil, err
local function try_reserve(name_key, addr, now_s)
  local pair_max, user_max, addr_max, window = limits()
  local w, ends = M.window(now_s, window)
  local exp = mongo.date(ends * 1000)
  local retry = max(1, math.ceil(ends - now_s))
  local pk, uk, ak = M.keys(name_key, addr)
  local ids = {}
  for _, l in ipairs({ { pk, pair_max }, { uk, user_max }, { ak, addr_max } }) do
    local id = l[1] .. "@" .. w
    local doc, err = attempts():find_one({ _id = id })
    if err then
      each_bump(ids, { r = -1 }, exp, "giving back a login reservation")
      return nil, err
    end
    local state = standing(doc, l[2], 1)
    if state == "ok" then
      doc, err = bump(id, { r = 1 }, exp)
      if not doc then
        each_bump(ids, { r = -1 }, exp, "giving back a login reservation")
        return nil, err
      end
      ids[#ids + 1] = id
      state = standing(doc, l[2], 0)
    end
    if state ~= "ok" then
      each_bump(ids, { r = -1 }, exp, "giving back a login reservation")
      return state, nil, nil, retry
    end
  end
  return "ok", ids, exp, retry
end

-- Counter documents hold f (failures) and r (attempts in flight). An attempt reserves r on all
-- three; it is refused at once when a counter's failures reached its limit, and waits (up to
-- QUEUE_MS) while failures plus attempts in flight would pass it: at most `limit - f` attempts
-- are ever being checked, on all hosts together, and concurrent right passwords are delayed
-- rather than refused.
-- Attempts of this worker per pair key that are reserving or being checked. Attempts beyond
-- the pair limit wait here, in memory, before they touch the database: a burst on one account
-- from one place then costs the database nothing while it waits. An entry older than
-- LOCAL_STALE_MS is forgotten (a handler that raised never gave its place back).
local here, LOCAL_STALE_MS = {}, 30000

local function enter_here(pk, limit, started)
  while true do
    local e = here[pk]
    local now = mongo.now():ms()
    if not e or now - e.since > LOCAL_STALE_MS then
      here[pk] = { n = 1, since = now }
      return true
    end
    if e.n < limit then
      e.n, e.since = e.n + 1, now
      return true
    end
    if now - started > QUEUE_MS then return false end
    core.sleep(5 + math.random(0, 5))
  end
end

local function leave_here(pk)
  local e = here[pk]
  if not e then return end
  e.n = e.n - 1
  if e.n <= 0 then here[pk] = nil end
end

local reserve_mongodb

function mongodb.reserve(name_key, addr)
  local started = mongo.now():ms()
  local pk = M.keys(name_key, addr)
  if not enter_here(pk, setting("login_max_per_pair"), started) then
    return false, 1
  end
  -- The place taken in `here` is given back whatever happens in between, even an error raised
  -- by the database binding: a raised error must not leave an entry per name in worker memory.
  local ok, a, b = pcall(reserve_mongodb, name_key, addr, pk, started)
  if not ok then
    leave_here(pk)
    error(a, 0)
  end
  return a, b
end

reserve_mongodb = function(name_key, addr, pk, started)
  local pause = POLL_MS
  while true do
    local now_s = mongo.now():ms() / 1000
    local state, ids, exp, retry = try_reserve(name_key, addr, now_s)
    if state == nil then
      leave_here(pk)
      return nil, ids
    end
    maybe_sweep(now_s)
    if state == "ok" then
      return true, { store = "mongodb", ids = ids, exp = exp, here = pk }
    end
    if state == "locked" or now_s * 1000 - started > QUEUE_MS then
      leave_here(pk)
      return false, retry
    end
    core.sleep(pause + math.random(0, pause))
    pause = math.min(pause * 2, POLL_MAX_MS)
  end
end

function mongodb.failed(t)
  each_bump(t.ids, { f = 1, r = -1 }, t.exp, "counting a failed login")
  leave_here(t.here)
end

function mongodb.succeeded(t)
  -- The pair's earlier failures are forgiven with the same write that gives the attempt back.
  local doc, err = dblock.with(attempts(), t.ids[1], function()
    return attempts():find_one_and_update({ _id = t.ids[1] },
                                          { ["$inc"] = { r = -1 }, ["$set"] = { f = 0 } })
  end)
  if not doc and err then log.warn("clearing a login counter failed: " .. tostring(err)) end
  each_bump({ t.ids[2], t.ids[3] }, { r = -1 }, t.exp, "giving back a login reservation")
  leave_here(t.here)
end

function mongodb.abandon(t)
  each_bump(t.ids, { r = -1 }, t.exp, "giving back a login reservation")
  leave_here(t.here)
end

-- ---------------------------------------------------------------------------------------------
-- The interface routes/auth.lua uses

local STORES = { memory = memory, mongodb = mongodb }

local function reserve(name_key, addr)
  local store = STORES[setting("throttle_store")] or mongodb
  local ok, ticket = store.reserve(name_key, addr)
  if ok == nil and ticket == "lock_timeout" then
    -- The counters are there but crowded: refuse (fail closed), never fall back.
    return false, 1
  end
  if ok == nil then
    if not OUTAGE[ticket] then log.error("login counters: " .. tostring(ticket)) end
    log.warn("login counters unavailable (" .. tostring(ticket) .. "): this host's own " ..
             "counters decide")
    return memory.reserve(name_key, addr)
  end
  return ok, ticket
end

-- reserve(name_key, addr) -> true, ticket | false, retry_after_s
-- Never fails: an outage of the mongodb store falls back to the memory store.
function M.reserve(name_key, addr)
  local ok, ticket = reserve(name_key, addr)
  if not ok then throttled:inc() end
  return ok, ticket
end

-- failed(ticket): the attempt was checked and was wrong.
function M.failed(t) STORES[t.store].failed(t) end

-- succeeded(ticket): the attempt logged in; it is not counted.
function M.succeeded(t) STORES[t.store].succeeded(t) end

-- abandon(ticket): the attempt could not be checked (the database failed): not counted.
function M.abandon(t) STORES[t.store].abandon(t) end

-- prepare() -> true: the TTL index on exp, where the server has one (on_start).
function M.prepare()
  if setting("throttle_store") ~= "mongodb" then return true end
  local ok, err = attempts():create_index({ { "exp", 1 } }, { expire_after_seconds = 1 })
  sweep.ttl = ok == true
  if not ok then
    if OUTAGE[err] then return nil, err end
    log.info("login counters: the server has no TTL index (" .. tostring(err) .. "); " ..
             "expired windows are swept instead")
  end
  return true
end

return M
