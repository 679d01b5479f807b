-- lib/dblock.lua: short critical sections across every host of a fleet, on any MongoDB-compatible
-- server.
--
-- Owns: the lock documents. Why they exist: an update's read-modify-write is atomic on MongoDB
-- (and SecantusDB), but FerretDB 1.24 applies $inc and findAndModify as a read followed by a
-- write, so concurrent increments are lost (measured: 80 concurrent "decrement while n > 1" all
-- succeeded from 50). The one operation that decides races on every server is an insert against
-- the _id: a lock is the document `{_id = "lock:<name>", at}` in the collection it protects;
-- inserting it takes the lock, deleting it gives it back. A lock older than STALE_MS belongs to a
-- host that died mid-section and is taken over (a section never runs that long: it is a few
-- primary-key operations).
--
-- Locks cost three round trips, so they are taken only where they are needed: the server's
-- buildInfo is read once per worker, and a server that names itself FerretDB (ferretdbVersion)
-- gets locks; MongoDB and SecantusDB apply single-document updates atomically and run fn
-- directly. Until the answer is known (the database is down), locks are taken.
--
-- with(coll, name, fn) -> fn's results | nil, err ("lock_timeout" when the lock stays taken for
-- WAIT_MS: contention, not an outage; or a database code). fn runs as a protected call: an error in it releases the lock
-- and is raised again.

local core = require "luahost"
local log = require "luahost.log"
local mongo = require "luahost.mongo"

local random = math.random

local M = {}

local STALE_MS, WAIT_MS = 10000, 5000
M.STALE_MS, M.WAIT_MS = STALE_MS, WAIT_MS

local function now_ms() return mongo.now():ms() end

local function acquire(coll, id)
  local deadline = now_ms() + WAIT_MS
  while true do
    local at = mongo.now()
    local _, err = coll:insert_one({ _id = id, at = at })
    if not err then return at end
    if err ~= "duplicate_key" then return nil, err end
    local held
    held, err = coll:find_one({ _id = id })
    if err then return nil, err end
    if held and (type(held.at) ~= "userdata" or now_ms() - held.at:ms() > STALE_MS) then
      log.warn("taking over the stale lock " .. id)
      coll:delete_one({ _id = id, at = held.at })
    elseif now_ms() > deadline then
      return nil, "lock_timeout"
    elseif held then
      core.sleep(2 + random(0, 6))
    end
  end
end

local function finish(coll, id, at, ok, ...)
  local n, err = coll:delete_one({ _id = id, at = at })
  if not n then log.warn("releasing the lock " .. id .. " failed: " .. tostring(err)) end
  if not ok then error((...), 0) end
  return ...
end

-- nil until known, then true (locks needed) or false.
local needed

function M.needed()
  if needed == nil then
    local info = mongo.build_info()
    if info then needed = info.ferretdbVersion ~= nil end
  end
  return needed ~= false
end

function M.with(coll, name, fn)
  if not M.needed() then return fn() end
  local id = "lock:" .. name
  local at, err = acquire(coll, id)
  if not at then return nil, err end
  return finish(coll, id, at, pcall(fn))
end

return M
