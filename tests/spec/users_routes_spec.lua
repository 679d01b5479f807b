-- Specs for scripts/routes/users.lua: how lib/users.lua's outcomes become responses, with the data
-- layer as a double. (The black-box suite covers the routes end to end; this covers outcomes that
-- the schemas keep from ever reaching a handler over HTTP.)
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/users_routes_spec.lua
package.path = "scripts/?.lua;host/lua/?.lua;tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

local function routes_with(users_double)
  support.provide("luahost.json", support.json)
  support.load_file("luahost.response", "host/lua/response.lua")
  support.provide("lib.users", users_double)
  support.provide("lib.schemas", {
    create_user = {}, update_user = {}, list_query = {},
    username_problem = function(why) return why, "username rule: " .. tostring(why) end,
  })
  support.load_file("routes.users", "scripts/routes/users.lua")
  local by = {}
  for _, r in ipairs(require("routes.users").routes) do by[r.method .. " " .. r.path] = r end
  return by
end

describe("routes/users.lua outcomes", function()
  it("answers a name that breaks an identity rule with 422 naming the rule, never a 500", function()
    local routes = routes_with({
      create = function() return nil, "bad_username", "mixed_script" end,
      update = function() return nil, "bad_username", "format" end,
    })
    local status, body = routes["POST /users/create"].handler({ body = { username = "x" } })
    assert.equal(422, status)
    local e = body.response_data.errors[1]
    assert.same({ "username", "body", "mixed_script" }, { e.field, e["in"], e.code })
    status, body = routes["PUT /users/{user_id}"].handler({ params = { user_id = "a" },
                                                             body = { username = "x" } })
    assert.equal(422, status)
    assert.equal("format", body.response_data.errors[1].code)
  end)

  it("passes a database outage back to the runtime as nil, code", function()
    local routes = routes_with({ create = function() return nil, "unavailable" end })
    local doc, err = routes["POST /users/create"].handler({ body = {} })
    assert.is_nil(doc)
    assert.equal("unavailable", err)
  end)
end)
