-- Specs for scripts/lib/settings.lua: the user service's settings come from the application's
-- section of the configuration (luahost.config.app), with the defaults written once, there.
-- Run: luajit /usr/bin/busted tests/spec/settings_spec.lua
package.path = "scripts/?.lua;tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

local function settings_with(config)
  support.provide("luahost", { config = config })
  support.load_file("lib.settings", "scripts/lib/settings.lua")
  return require "lib.settings"
end

describe("lib/settings.lua", function()
  it("reads a configured value from config.app", function()
    local s = settings_with({ app = { login_window_s = 60, users_collection = "people" } })
    assert.equal(60, s.get("login_window_s"))
    assert.equal("people", s.get("users_collection"))
  end)

  it("falls back to its own defaults for what the app section lacks", function()
    local s = settings_with({ app = {} })
    assert.equal(900, s.get("login_window_s"))
    assert.equal(5, s.get("login_max_per_pair"))
    assert.equal("users", s.get("users_collection"))
    assert.equal("", s.get("admin_username"))
  end)

  it("works without any configuration (a spec, or --check)", function()
    local s = settings_with(nil)
    assert.equal(20, s.get("login_max_per_user"))
  end)

  it("raises for a setting it does not know", function()
    local s = settings_with({ app = {} })
    assert.has_error(function() s.get("no_such_setting") end)
  end)

  it("reads an integer setting given as text (an environment variable) as its number", function()
    local s = settings_with({ app = { login_window_s = "60", admin_username = "007" } })
    assert.equal(60, s.get("login_window_s"))
    assert.equal("007", s.get("admin_username"))
    assert.has_no.errors(s.check)
    assert.has_error(settings_with({ app = { login_window_s = "60s" } }).check)
  end)

  it("checks every configured value, naming the setting and its variable", function()
    assert.has_no.errors(function() settings_with({ app = { login_window_s = 60 } }).check() end)
    assert.has_no.errors(function() settings_with(nil).check() end)
    local bad = {
      { login_window_s = 0 }, { login_window_s = 86401 }, { login_max_per_pair = 1.5 },
      { admin_userage = -1 }, { admin_userage = "thirty" }, { users_collection = 5 },
      { throttle_store = "redis" },
    }
    for _, app in ipairs(bad) do
      local name = next(app)
      local ok, err = pcall(settings_with({ app = app }).check)
      assert.is_false(ok)
      assert.truthy(err:find("app." .. name .. " (LUAHOST_" .. name:upper() .. ")", 1, true), err)
    end
  end)
end)
