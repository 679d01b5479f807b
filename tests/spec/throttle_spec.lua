-- Specs for scripts/lib/throttle.lua's mongodb store when its lock is crowded: a count that meets
-- lock_timeout is tried again, so a checked wrong password is never left uncounted (which would
-- loosen the limit). lib/dblock.lua, the collection and the host modules are test doubles; the
-- store against real servers is covered by tests/integration/test_fleet.py.
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/throttle_spec.lua
package.path = "scripts/?.lua;tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

local incs, warnings = {}, {}
local crowded = 0 -- how many of the next lock attempts time out
local attempts = {}
function attempts:find_one_and_update(filter, update)
  incs[#incs + 1] = { id = filter._id, inc = update["$inc"] }
  return { _id = filter._id }
end

support.provide("luahost", { config = { app = { throttle_store = "mongodb" } } })
support.provide("luahost.log", { warn = function(m) warnings[#warnings + 1] = m end,
                                 info = function() end, error = function() end })
support.provide("luahost.metrics", { counter = function() return { inc = function() end } end })
support.provide("luahost.mongo", { collection = function() return attempts end })
support.provide("luahost.ratelimit", {})
support.provide("lib.dblock", {
  with = function(_, _, fn)
    if crowded > 0 then
      crowded = crowded - 1
      return nil, "lock_timeout"
    end
    return fn()
  end,
})
for _, name in ipairs({ "lib.throttle", "lib.settings" }) do
  package.loaded[name] = nil
  package.preload[name] = nil
end

describe("lib/throttle.lua, a crowded lock", function()
  local throttle = require "lib.throttle"
  local ticket = { store = "mongodb", ids = { "login:pair:a|u", "login:user:u", "login:addr:a" },
                   exp = 0, here = "login:pair:a|u" }

  before_each(function()
    incs, warnings, crowded = {}, {}, 0
  end)

  it("counts a failed login on every counter even when the lock timed out twice", function()
    crowded = 2
    throttle.failed(ticket)
    assert.equal(3, #incs)
    for i, id in ipairs(ticket.ids) do
      assert.equal(id, incs[i].id)
      assert.same({ f = 1, r = -1 }, incs[i].inc)
    end
    assert.same({}, warnings)
  end)

  it("gives up after BUMP_TRIES timeouts on one counter, with a warning, and goes on", function()
    crowded = throttle.BUMP_TRIES
    throttle.failed(ticket)
    assert.equal(2, #incs) -- the pair's count was lost; the user's and the address's were kept
    assert.equal("login:user:u", incs[1].id)
    assert.equal(1, #warnings)
    assert.truthy(warnings[1]:find("lock_timeout", 1, true))
  end)
end)
