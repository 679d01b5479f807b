-- Specs for scripts/policies/rbac.lua: the RBAC data and its pure decision functions, on their own
-- (no host, no database): admin, self, another user and an anonymous caller against every policy
-- the user routes name. Run: luajit /usr/bin/busted tests/spec/rbac_spec.lua
package.path = "scripts/?.lua;tests/spec/support/?.lua;" .. package.path

-- The roles come from lib/schemas.lua, which builds on the host's luahost.validate (the real file,
-- over a luahost.json double).
local support = require "spec_host"
support.provide("luahost.json", support.json)
support.load_file("luahost.validate", "host/lua/validate.lua")
package.loaded["lib.schemas"] = nil
package.loaded["policies.rbac"] = nil

local mod = require "policies.rbac"
local rbac = mod.rbac

local ADMIN_ID = "65a1b2c3d4e5f60718293a4b"
local ALICE_ID = "65a1b2c3d4e5f60718293a4c"
local BOB_ID = "65a1b2c3d4e5f60718293a4d"

local admin = { id = ADMIN_ID, username = "root", role = "admin" }
local alice = { id = ALICE_ID, username = "alice", role = "user" }

local function req(user_id, body)
  return { params = { user_id = user_id }, body = body }
end

-- The policy function a route names, as the runtime calls it.
local function policy(name)
  local p = mod.policies[name]
  assert.is_table(p, "no policy " .. name)
  return p
end

local function allowed(name, user, r)
  local p = policy(name)
  if p.authenticated and user == nil then return false end  -- the runtime answers 401 first
  if not p.allow then return true end
  return p.allow(user, r or req()) == true
end

describe("policies/rbac.lua", function()
  it("exports the named policies, all needing a caller, and no hook (app.lua has those)", function()
    assert.is_nil(mod.authenticate)
    for _, name in ipairs({ "authenticated", "admin", "admin_or_self", "admin_or_self_update" }) do
      assert.is_true(policy(name).authenticated, name)
    end
  end)

  describe("roles as data", function()
    it("lists exactly admin and user", function()
      local roles = { unpack(rbac.ROLES) }
      table.sort(roles)
      assert.same({ "admin", "user" }, roles)
      assert.equal(require("lib.schemas").ROLES, rbac.ROLES) -- one list, schemas.lua's
    end)

    it("grants admins every action on any account", function()
      for action in pairs(rbac.PERMISSIONS) do
        assert.is_true(rbac.can(admin, action, BOB_ID), action)
        assert.is_true(rbac.can(admin, action, nil), action)
      end
    end)

    it("grants users read and update of their own account only", function()
      assert.is_true(rbac.can(alice, "users.read", ALICE_ID))
      assert.is_true(rbac.can(alice, "users.update", ALICE_ID))
      for _, action in ipairs({ "users.list", "users.create", "users.delete", "users.set_role" }) do
        assert.is_false(rbac.can(alice, action, ALICE_ID), action)
      end
      assert.is_false(rbac.can(alice, "users.read", BOB_ID))
      assert.is_false(rbac.can(alice, "users.update", BOB_ID))
    end)

    it("denies unknown actions, unknown roles and anonymous callers", function()
      assert.is_false(rbac.can(admin, "users.explode", BOB_ID))
      local odd = { id = BOB_ID, role = "superuser" }
      assert.is_false(rbac.can(odd, "users.list"))
      assert.is_true(rbac.can(odd, "users.read", BOB_ID))     -- ownership needs no role
      assert.is_false(rbac.can(nil, "users.read", ALICE_ID))
      assert.is_false(rbac.can({ id = ALICE_ID }, "users.list"))
    end)
  end)

  describe("is_self", function()
    it("compares ids as lower-case hex", function()
      assert.is_true(rbac.is_self(alice, ALICE_ID))
      assert.is_true(rbac.is_self(alice, ALICE_ID:upper()))
      assert.is_false(rbac.is_self(alice, BOB_ID))
    end)

    it("never treats a malformed or missing id as the caller's", function()
      assert.is_false(rbac.is_self(alice, nil))
      assert.is_false(rbac.is_self(alice, ""))
      assert.is_false(rbac.is_self(alice, ALICE_ID .. "0"))
      assert.is_false(rbac.is_self({ role = "user" }, ALICE_ID))
      assert.is_false(rbac.is_self(nil, ALICE_ID))
      assert.is_false(rbac.is_self({ id = "x", role = "user" }, "x"))
    end)
  end)

  describe("policy admin", function()
    it("allows an admin and refuses a user with 403", function()
      assert.is_true(allowed("admin", admin))
      local ok, code, message = policy("admin").allow(alice, req())
      assert.is_nil(ok)
      assert.equal("forbidden", code)
      assert.equal("Admin privileges required", message)
    end)

    it("refuses anonymous callers before the policy runs", function()
      assert.is_false(allowed("admin", nil))
    end)
  end)

  describe("policy admin_or_self", function()
    it("allows an admin for any id, even a malformed one (the handler answers 404)", function()
      assert.is_true(allowed("admin_or_self", admin, req(BOB_ID)))
      assert.is_true(allowed("admin_or_self", admin, req("not-an-id")))
    end)

    it("allows the owner", function()
      assert.is_true(allowed("admin_or_self", alice, req(ALICE_ID)))
    end)

    it("refuses another user's id with 403 whether or not it exists", function()
      local ok, code = policy("admin_or_self").allow(alice, req(BOB_ID))
      assert.is_nil(ok)
      assert.equal("forbidden", code)
      assert.is_false(allowed("admin_or_self", alice, req("000000000000000000000000")))
      assert.is_false(allowed("admin_or_self", alice, req("garbage")))
    end)

    it("refuses anonymous callers", function()
      assert.is_false(allowed("admin_or_self", nil, req(ALICE_ID)))
    end)
  end)

  describe("policy admin_or_self_update", function()
    it("lets the owner update its own fields", function()
      assert.is_true(allowed("admin_or_self_update", alice, req(ALICE_ID, { userage = 31 })))
    end)

    it("refuses a non-admin sending role, even its own current role or null", function()
      local allow = policy("admin_or_self_update").allow
      local ok, code, message = allow(alice, req(ALICE_ID, { role = "admin" }))
      assert.is_nil(ok)
      assert.equal("forbidden", code)
      assert.matches("admin", message)
      assert.is_nil((allow(alice, req(ALICE_ID, { role = "user" }))))
      local json_null = setmetatable({}, {})
      assert.is_nil((allow(alice, req(ALICE_ID, { role = json_null }))))
    end)

    it("lets an admin change anyone's role, its own included", function()
      assert.is_true(allowed("admin_or_self_update", admin, req(BOB_ID, { role = "admin" })))
      assert.is_true(allowed("admin_or_self_update", admin, req(ADMIN_ID, { role = "user" })))
    end)

    it("refuses another user's account with 403 and ignores non-table bodies", function()
      assert.is_false(allowed("admin_or_self_update", alice, req(BOB_ID, { userage = 1 })))
      assert.is_true(allowed("admin_or_self_update", alice, req(ALICE_ID, "not a table")))
      assert.is_true(allowed("admin_or_self_update", alice, req(ALICE_ID, nil)))
    end)
  end)

  describe("policy authenticated", function()
    it("has no further rule: any caller with a valid token", function()
      assert.is_nil(policy("authenticated").allow)
      assert.is_true(allowed("authenticated", alice))
      assert.is_false(allowed("authenticated", nil))
    end)
  end)
end)
