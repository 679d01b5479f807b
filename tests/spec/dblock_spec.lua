-- Specs for scripts/lib/dblock.lua: lock documents taken by insert, given back by delete, a stale
-- lock taken over, contention answered with lock_timeout, an error in the section releasing the
-- lock, and no locks at all where the server applies updates atomically. The collection and the
-- clock are test doubles.
-- Run: luajit /usr/bin/busted tests/spec/dblock_spec.lua
package.path = "scripts/?.lua;tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

local clock = 0
-- Dates are userdata, as luahost.mongo's are (newproxy: one shared metatable, so __eq applies).
local values = setmetatable({}, { __mode = "k" })
local proto = newproxy(true)
local DATE_MT = getmetatable(proto)
DATE_MT.__index = { ms = function(d) return values[d] end }
DATE_MT.__eq = function(a, b) return values[a] == values[b] end
local function date(v)
  local d = newproxy(proto)
  values[d] = v
  return d
end
local server = { ferretdbVersion = "v1.24.2", version = "7.0.42" }
local mongo_double = {
  now = function() return date(clock) end,
  build_info = function() return server end,
}
local warnings = {}
support.provide("luahost", { sleep = function(ms) clock = clock + ms end })
support.provide("luahost.mongo", mongo_double)
support.provide("luahost.log", { warn = function(m) warnings[#warnings + 1] = m end })
package.loaded["lib.dblock"] = nil
package.preload["lib.dblock"] = nil

-- A collection of documents by _id, with the operations dblock uses.
local function collection()
  local c = { docs = {}, inserts = 0 }
  function c:insert_one(d)
    self.inserts = self.inserts + 1
    if self.docs[d._id] then return nil, "duplicate_key" end
    self.docs[d._id] = d
    return d._id
  end
  function c:find_one(f) return self.docs[f._id] end
  function c:delete_one(f)
    local d = self.docs[f._id]
    if d and (f.at == nil or d.at == f.at) then self.docs[f._id] = nil return 1 end
    return 0
  end
  return c
end

describe("lib/dblock.lua", function()
  local dblock = require "lib.dblock"

  it("takes the lock by insert and gives it back by delete", function()
    local c = collection()
    local a, b = dblock.with(c, "k", function()
      assert.is_table(c.docs["lock:k"])
      return "x", 2
    end)
    assert.equal("x", a)
    assert.equal(2, b)
    assert.is_nil(c.docs["lock:k"])
  end)

  it("waits for a held lock, then answers lock_timeout", function()
    local c = collection()
    c.docs["lock:k"] = { _id = "lock:k", at = date(clock) }
    local ran = false
    local a, err = dblock.with(c, "k", function() ran = true end)
    assert.is_nil(a)
    assert.equal("lock_timeout", err)
    assert.is_false(ran)
    assert.is_true(c.inserts > 1)               -- it tried again while waiting
    assert.is_table(c.docs["lock:k"])           -- someone else's lock is left alone
  end)

  it("takes over a lock older than STALE_MS", function()
    local c = collection()
    clock = clock + 100000
    c.docs["lock:k"] = { _id = "lock:k", at = date(clock - dblock.STALE_MS - 1) }
    assert.equal(1, (dblock.with(c, "k", function() return 1 end)))
    assert.is_nil(c.docs["lock:k"])
    assert.matches("stale lock", warnings[#warnings])
  end)

  it("releases the lock when the section raises, and raises again", function()
    local c = collection()
    assert.has_error(function() dblock.with(c, "k", function() error("boom", 0) end) end, "boom")
    assert.is_nil(c.docs["lock:k"])
  end)
end)

describe("lib/dblock.lua on a server with atomic updates", function()
  it("runs the section without a lock", function()
    server = { version = "8.0.0" }
    package.loaded["lib.dblock"] = nil
    local dblock = require "lib.dblock"
    local c = collection()
    assert.equal(5, (dblock.with(c, "k", function() return 5 end)))
    assert.equal(0, c.inserts)
    assert.is_false(dblock.needed())
  end)
end)
