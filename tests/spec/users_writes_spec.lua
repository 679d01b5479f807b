-- Specs for the writes of scripts/lib/users.lua against an in-memory database double: what a
-- failed write gives back (the admin guard's count, a name reservation) depends on whether the
-- failure is definitive or ambiguous (the write may have been applied), and a rename re-checks
-- its reservation after the write, as create does. The database is a test double (one table
-- per collection, faults injected per operation); luahost.unicode is the real ICU binding.
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/users_writes_spec.lua
package.path = "scripts/?.lua;host/lua/?.lua;tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

-- ObjectIds compare by hex (one shared metatable, so __eq applies).
local OID_MT = { __tostring = function(o) return o.hex end,
                 __eq = function(a, b) return a.hex == b.hex end }
local next_oid = 0
local function objectid(hex)
  if hex == nil then
    next_oid = next_oid + 1
    return setmetatable({ hex = string.format("%024x", next_oid) }, OID_MT)
  end
  if type(hex) ~= "string" or not hex:match("^%x+$") or #hex ~= 24 then return nil, "bad_value" end
  return setmetatable({ hex = hex:lower() }, OID_MT)
end

local clock = 1000000
local DATE_MT = { __index = { ms = function(d) return d.v end } }

-- The database: collections by name, each a list of documents.
local db = {}
-- faults[coll .. "." .. op] = { err = code, apply = bool, before = fn }: the next such call
-- first runs before(), then applies the operation only when apply is set, and answers nil, err
-- (or, with pass set, answers as the operation does).
local faults = {}

local function matches(doc, filter)
  for k, want in pairs(filter) do
    local have = doc[k]
    if type(want) == "table" and getmetatable(want) == nil then
      if want["$ne"] ~= nil then
        if have == want["$ne"] then return false end
      elseif want["$gt"] ~= nil then
        if not (have and have > want["$gt"]) then return false end
      elseif want["$exists"] ~= nil then
        if (have ~= nil) ~= want["$exists"] then return false end
      else
        return false
      end
    elseif have ~= want then
      return false
    end
  end
  return true
end

local function copy(d)
  local c = {}
  for k, v in pairs(d) do c[k] = v end
  return c
end

local function collection(name)
  db[name] = db[name] or {}
  local docs = db[name]
  local c = {}
  local function find(filter)
    for i, d in ipairs(docs) do if matches(d, filter) then return d, i end end
  end
  local ops = {}
  function ops.insert_one(doc)
    if find({ _id = doc._id }) then return nil, "duplicate_key" end
    docs[#docs + 1] = copy(doc)
    return doc._id
  end
  function ops.find_one(filter)
    local d = find(filter)
    return d and copy(d) or nil
  end
  function ops.find_one_and_update(filter, update)
    local d = find(filter)
    if not d then return nil end
    for k, v in pairs(update["$set"] or {}) do d[k] = v end
    for k, v in pairs(update["$inc"] or {}) do d[k] = (d[k] or 0) + v end
    return copy(d)
  end
  function ops.update_one(filter, update)
    local d = ops.find_one_and_update(filter, update)
    return d and 1 or 0, d and 1 or 0
  end
  function ops.delete_one(filter)
    local _, i = find(filter)
    if not i then return 0 end
    table.remove(docs, i)
    return 1
  end
  function ops.count_documents(filter)
    local n = 0
    for _, d in ipairs(docs) do if matches(d, filter) then n = n + 1 end end
    return n
  end
  for op, fn in pairs(ops) do
    c[op] = function(_, ...)
      local f = faults[name .. "." .. op]
      if f then
        faults[name .. "." .. op] = nil
        if f.before then f.before() end
        if f.pass then return fn(...) end
        if f.apply then fn(...) end
        return nil, f.err
      end
      return fn(...)
    end
  end
  return c
end

local warnings = {}
support.provide("luahost", { config = { app = { users_collection = "users" } },
                             sleep = function(ms) clock = clock + ms end })
support.provide("luahost.json", support.json)
support.provide("luahost.log", { debug = function() end, info = function() end,
                                 warn = function(m) warnings[#warnings + 1] = m end,
                                 error = function() end })
support.provide("luahost.mongo", {
  objectid = objectid,
  now = function() return setmetatable({ v = clock }, DATE_MT) end,
  collection = collection,
  build_info = function() return { version = "7.0.0" } end,   -- atomic updates: no locks
})
support.provide("luahost.password", { hash = function(pw) return "hash:" .. pw end })
support.provide("luahost.jwt", {})
support.load_file("luahost.validate", "host/lua/validate.lua")
for _, name in ipairs({ "lib.schemas", "lib.users", "lib.dblock", "lib.settings" }) do
  package.loaded[name] = nil
  package.preload[name] = nil
end
local users = require "lib.users"

local function guard() return db.users_meta[1].n end

-- Two admins and the guard counting them, made through the module itself.
local function two_admins()
  -- Emptied in place: the module keeps the collections it was given.
  for _, docs in pairs(db) do for i = #docs, 1, -1 do docs[i] = nil end end
  for k in pairs(faults) do faults[k] = nil end
  local a = assert(users.create({ username = "ann", password = "password-1", userage = 30,
                                  role = "admin" }))
  local b = assert(users.create({ username = "bob", password = "password-1", userage = 30,
                                  role = "admin" }))
  for i = #(db.users_meta or {}), 1, -1 do db.users_meta[i] = nil end
  assert(users.ensure_admin_guard())
  assert.equal(2, guard())
  return tostring(a._id), tostring(b._id)
end

describe("lib/users.lua writes", function()
  it("keeps the admin count lowered when a demotion fails ambiguously", function()
    local a, b = two_admins()
    faults["users.find_one_and_update"] = { err = "timeout", apply = true }
    local doc, err = users.update(a, { role = "user" })
    assert.is_nil(doc)
    assert.equal("timeout", err)
    assert.equal(1, guard())                 -- never above the real number of admins (1)
    -- The true last admin cannot be demoted.
    doc, err = users.update(b, { role = "user" })
    assert.is_nil(doc)
    assert.equal("last_admin", err)
  end)

  it("gives the count back when a demotion matched nothing and is decided again", function()
    local a = two_admins()
    -- The write matches nothing (no error) once: the role read is re-read and the take redone.
    faults["users.find_one_and_update"] = { err = nil, apply = false }
    local doc = users.update(a, { role = "user" })
    assert.equal("user", doc.role)
    assert.equal(1, guard())
  end)

  it("gives the count back when a demotion is refused definitively", function()
    local a = two_admins()
    faults["users.find_one_and_update"] = { err = "overloaded", apply = false }
    local doc, err = users.update(a, { role = "user" })
    assert.is_nil(doc)
    assert.equal("overloaded", err)
    assert.equal(2, guard())
  end)

  it("keeps the admin count lowered when a delete fails ambiguously", function()
    local a, b = two_admins()
    faults["users.delete_one"] = { err = "unavailable", apply = true }
    local ok, err = users.delete(a)
    assert.is_nil(ok)
    assert.equal("unavailable", err)
    assert.equal(1, guard())
    ok, err = users.delete(b)
    assert.is_nil(ok)
    assert.equal("last_admin", err)
  end)

  it("keeps a new user's name reserved when its insert fails ambiguously", function()
    two_admins()
    faults["users.insert_one"] = { err = "timeout", apply = true }
    local doc, err = users.create({ username = "carol", password = "password-1", userage = 30 })
    assert.is_nil(doc)
    assert.equal("timeout", err)
    local skel = users.identity("carol").skeleton
    local held = false
    for _, d in ipairs(db.users_names) do if d._id == skel then held = true end end
    assert.is_true(held)
  end)

  it("releases a new user's name when its insert is refused definitively", function()
    two_admins()
    faults["users.insert_one"] = { err = "overloaded", apply = false }
    assert.is_nil((users.create({ username = "dora", password = "password-1", userage = 30 })))
    local skel = users.identity("dora").skeleton
    for _, d in ipairs(db.users_names) do assert.not_equal(skel, d._id) end
  end)

  it("withdraws a rename whose reservation was lost while the write stalled", function()
    local a = two_admins()
    local skel = users.identity("erin").skeleton
    local other = objectid()
    -- While the write stalls, the new name's reservation goes to another account (as a claim
    -- after the grace period would take it); then the write goes through.
    faults["users.find_one_and_update"] = { pass = true, before = function()
      for _, d in ipairs(db.users_names) do if d._id == skel then d.user = other end end
    end }
    local doc, err = users.update(a, { username = "erin" })
    assert.is_nil(doc)
    assert.equal("username_taken", err)
    local me
    for _, d in ipairs(db.users) do if tostring(d._id) == a then me = d end end
    assert.equal("ann", me.username)          -- the old name is written back ...
    local held_old = false
    for _, d in ipairs(db.users_names) do
      if d._id == users.identity("ann").skeleton and tostring(d.user) == a then held_old = true end
    end
    assert.is_true(held_old)                  -- ... and still held
  end)
end)
