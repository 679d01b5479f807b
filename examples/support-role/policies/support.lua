-- policies/support.lua (examples/support-role): a policy change with its policy tests.
--
-- A `support` role that may list every account and read any account, and nothing else: it may
-- not create, change or delete accounts, nor give anyone a role. scripts.patch adds "support" to
-- lib/schemas.lua's ROLES (so an admin can give it), makes GET /users/ and GET /users/{user_id}
-- name the policies below, and moves the lines of policies/rbac_tests.lua that test those two
-- routes to the new policy names. The tests here pin down what support may and may not do; they
-- are what fails if the change is made the short way (adding support to rbac.lua's
-- PERMISSIONS["users.list"], which the `admin` policy of create and delete also reads).
local rbac = require("policies.rbac").rbac

local READERS = { admin = true, support = true }

local function is_reader(user)
  return type(user) == "table" and type(user.role) == "string" and READERS[user.role] == true
end

-- GET /users/: admins and support.
local function staff(user)
  if is_reader(user) then return true end
  return nil, "forbidden", "Admin or support privileges required"
end

-- GET /users/{user_id}: admins and support, or the account's owner.
local function staff_or_self(user, req)
  if is_reader(user) or rbac.is_self(user, req.params and req.params.user_id) then return true end
  return nil, "forbidden", "You can only access your own account"
end

local ADMIN = { id = "65a1b2c3d4e5f60718293a4b", username = "root", role = "admin" }
local USER = { id = "65a1b2c3d4e5f60718293a4c", username = "alice", role = "user" }
local SUPPORT = { id = "65a1b2c3d4e5f60718293a4e", username = "sam", role = "support" }
local OTHER = "/users/65a1b2c3d4e5f60718293a4d" -- somebody else's account

return {
  policies = {
    staff = { authenticated = true, allow = staff },
    staff_or_self = { authenticated = true, allow = staff_or_self },
  },
  tests = {
    -- what support may do
    { name = "support may list users", policy = "staff", user = SUPPORT,
      request = { method = "GET", path = "/users/" }, expect = "allow" },
    { name = "support may read another account", policy = "staff_or_self", user = SUPPORT,
      request = { method = "GET", path = OTHER }, expect = "allow" },
    { name = "support may update its own account", policy = "admin_or_self_update", user = SUPPORT,
      request = { method = "PUT", path = "/users/" .. SUPPORT.id, body = { userage = 30 } },
      expect = "allow" },
    -- and what it may not
    { name = "support may not create users", policy = "admin", user = SUPPORT,
      request = { method = "POST", path = "/users/create",
                  body = { username = "bob", password = "a long password 1", userage = 30 } },
      expect = "deny" },
    { name = "support may not delete an account", policy = "admin", user = SUPPORT,
      request = { method = "DELETE", path = OTHER }, expect = "deny" },
    { name = "support may not update another account", policy = "admin_or_self_update",
      user = SUPPORT, request = { method = "PUT", path = OTHER, body = { userage = 30 } },
      expect = "deny" },
    { name = "support may not make itself admin", policy = "admin_or_self_update", user = SUPPORT,
      request = { method = "PUT", path = "/users/" .. SUPPORT.id, body = { role = "admin" } },
      expect = "deny" },
    -- the others keep what they had
    { name = "admin may still list users", policy = "staff", user = ADMIN,
      request = { method = "GET", path = "/users/" }, expect = "allow" },
    { name = "user still may not list users", policy = "staff", user = USER,
      request = { method = "GET", path = "/users/" }, expect = "deny" },
    { name = "user still may not read another account", policy = "staff_or_self", user = USER,
      request = { method = "GET", path = OTHER }, expect = "deny" },
  },
}
