-- Specs for luahost.response (host/lua/response.lua): envelope shape, status helpers, arrays that
-- stay arrays, and the runtime error mapping. Run: luajit /usr/bin/busted tests/spec/response_spec.lua
package.path = "host/lua/?.lua;" .. package.path

package.path = "tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"
support.provide("luahost.json", support.json)
support.load_file("luahost.response", "host/lua/response.lua")

local json = require "luahost.json"
local response = require "luahost.response"

local is_array = support.is_array

describe("luahost.response", function()
  describe("envelope", function()
    it("builds status, body and headers", function()
      local h = { ["X-Test"] = "1" }
      local status, body, headers = response.envelope(200, "Fetched", { id = "1" }, h)
      assert.equal(200, status)
      assert.same({ message = "Fetched", response_status = true, response_data = { id = "1" } }, body)
      assert.equal(h, headers)
    end)

    it("sets response_status from the status: below 400 is success", function()
      assert.is_true(select(2, response.envelope(399, "x")).response_status)
      assert.is_false(select(2, response.envelope(400, "x")).response_status)
      assert.is_false(select(2, response.envelope(503, "x")).response_status)
    end)

    it("turns nil data into json.null and keeps false", function()
      local _, body, headers = response.envelope(204, "Nothing")
      assert.equal(json.null, body.response_data)
      assert.is_nil(headers)
      _, body = response.envelope(200, "Flag", false)
      assert.is_false(body.response_data)
    end)

    it("raises on caller mistakes", function()
      assert.has_error(function() response.envelope("200", "x") end)
      assert.has_error(function() response.envelope(99, "x") end)
      assert.has_error(function() response.envelope(600, "x") end)
      assert.has_error(function() response.envelope(200.5, "x") end)
      assert.has_error(function() response.envelope(200, nil) end)
      assert.has_error(function() response.envelope(200, "x", nil, "h") end)
    end)
  end)

  describe("ok, created, list", function()
    it("ok is 200 and created is 201", function()
      local status, body = response.ok("Fetched", { a = 1 })
      assert.equal(200, status)
      assert.same({ message = "Fetched", response_status = true, response_data = { a = 1 } }, body)
      local h = {}
      local s2, b2, h2 = response.created("Created", { id = "x" }, h)
      assert.equal(201, s2)
      assert.is_true(b2.response_status)
      assert.equal(h, h2)
      assert.equal(json.null, select(2, response.ok("Done")).response_data)
    end)

    it("list marks items as an array, so an empty list stays []", function()
      local status, body = response.list("Users", {})
      assert.equal(200, status)
      assert.is_true(is_array(body.response_data))
      assert.same({}, body.response_data)
      local items = { { id = "1" }, { id = "2" } }
      _, body = response.list("Users", items, { ["X-Total"] = "2" })
      assert.equal(items, body.response_data)
      assert.is_true(is_array(items))
      assert.has_error(function() response.list("Users", nil) end)
    end)
  end)

  describe("error", function()
    it("builds a failed envelope carrying the code", function()
      local status, body, headers = response.error(404, "not_found", "User not found")
      assert.equal(404, status)
      assert.same({ message = "User not found", response_status = false,
                    response_data = { code = "not_found" } }, body)
      assert.is_nil(headers)
    end)

    it("passes headers through", function()
      local h = { ["WWW-Authenticate"] = "Bearer" }
      local _, _, headers = response.error(401, "unauthorized", "Not authenticated", h)
      assert.equal(h, headers)
    end)

    it("raises on caller mistakes", function()
      assert.has_error(function() response.error(200, "x", "y") end)
      assert.has_error(function() response.error(404, nil, "y") end)
      assert.has_error(function() response.error(404, "", "y") end)
      assert.has_error(function() response.error(404, "x") end)
    end)
  end)

  describe("validation_error", function()
    it("is a 422 listing the errors as an array", function()
      local errors = { { field = "userage", ["in"] = "body", code = "type", message = "m" } }
      local status, body = response.validation_error(errors)
      assert.equal(422, status)
      assert.equal("Request validation failed", body.message)
      assert.is_false(body.response_status)
      assert.equal(errors, body.response_data.errors)
      assert.is_true(is_array(body.response_data.errors))
      assert.has_error(function() response.validation_error(nil) end)
    end)
  end)

  describe("status_for", function()
    it("maps overloaded to 503 with Retry-After: 1", function()
      local status, code, message, headers = response.status_for("overloaded")
      assert.equal(503, status)
      assert.equal("overloaded", code)
      assert.equal("The server is busy, retry later", message)
      assert.same({ ["Retry-After"] = "1" }, headers)
    end)

    it("maps unavailable and timeout to 503 with Retry-After: 5", function()
      local status, code, _, headers = response.status_for("unavailable")
      assert.equal(503, status)
      assert.equal("service_unavailable", code)
      assert.same({ ["Retry-After"] = "5" }, headers)
      status, code, _, headers = response.status_for("timeout")
      assert.equal(503, status)
      assert.equal("timeout", code)
      assert.same({ ["Retry-After"] = "5" }, headers)
    end)

    it("returns a fresh headers table each call", function()
      local _, _, _, h1 = response.status_for("overloaded")
      h1["X-Extra"] = "1"
      local _, _, _, h2 = response.status_for("overloaded")
      assert.same({ ["Retry-After"] = "1" }, h2)
    end)

    it("maps anything else to 500 without leaking the raw error", function()
      for _, err in ipairs { "duplicate_key", "connection refused: mongo at 10.0.0.3", "" } do
        local status, code, message, headers = response.status_for(err)
        assert.equal(500, status)
        assert.equal("internal_error", code)
        assert.equal("Internal server error", message)
        assert.is_nil(headers)
      end
      assert.equal(500, (response.status_for(nil)))
      assert.equal(500, (response.status_for({ code = "overloaded" })))
    end)

    it("says which outcomes are worth retrying", function()
      for _, err in ipairs { "overloaded", "unavailable", "timeout" } do
        assert.is_true(response.retryable(err), err)
      end
      for _, err in ipairs { "duplicate_key", "internal_error", "script_budget_exceeded",
                             "script_memory_exceeded", "" } do
        assert.is_false(response.retryable(err), err)
      end
      assert.is_false(response.retryable(nil))
    end)
  end)
end)
