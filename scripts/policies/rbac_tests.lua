-- policies/rbac_tests.lua: the policy tests of policies/rbac.lua, run by `luahost check`, by the
-- busted specs (tests/spec/policy_tests_spec.lua) and on every reload. Each test is one request,
-- routed as a live one is (so `{user_id}` comes from the path), the policy the route names applied
-- with `user` as the caller (nil: anonymous, refused before any policy that needs a caller), and
-- the outcome it must have. Bodies are sent as JSON; only who may do what is tested here, not what
-- input is valid (the schemas' specs do that).
--
-- The matrix: every policy x role (admin, user, anonymous) x own/other account, and the role rule
-- (a user may not change any role, not even its own to what it is; an admin may change anyone's).
-- Change PERMISSIONS in rbac.lua and these say what changed; add a route, add its lines here.

local ADMIN = { id = "65a1b2c3d4e5f60718293a4b", username = "root", role = "admin" }
local USER = { id = "65a1b2c3d4e5f60718293a4c", username = "alice", role = "user" }
local OTHER = "65a1b2c3d4e5f60718293a4d" -- somebody else's account

local function users(id) return "/users/" .. id end

return { tests = {
  -- public: POST /login needs no caller
  { name = "anonymous may log in", policy = "public", user = nil,
    request = { method = "POST", path = "/login", body = "username=a&password=b",
                headers = { ["Content-Type"] = "application/x-www-form-urlencoded" } },
    expect = "allow" },

  -- authenticated: POST /logout, any caller with a valid token
  { name = "admin may log out", policy = "authenticated", user = ADMIN,
    request = { method = "POST", path = "/logout" }, expect = "allow" },
  { name = "user may log out", policy = "authenticated", user = USER,
    request = { method = "POST", path = "/logout" }, expect = "allow" },
  { name = "anonymous may not log out", policy = "authenticated", user = nil,
    request = { method = "POST", path = "/logout" }, expect = "deny" },

  -- admin: POST /users/create, GET /users/, DELETE /users/{user_id}
  { name = "admin may create users", policy = "admin", user = ADMIN,
    request = { method = "POST", path = "/users/create",
                body = { username = "bob", password = "a long password", userage = 30 } },
    expect = "allow" },
  { name = "user may not create users", policy = "admin", user = USER,
    request = { method = "POST", path = "/users/create",
                body = { username = "bob", password = "a long password", userage = 30 } },
    expect = "deny" },
  { name = "anonymous may not create users", policy = "admin", user = nil,
    request = { method = "POST", path = "/users/create",
                body = { username = "bob", password = "a long password", userage = 30 } },
    expect = "deny" },
  { name = "admin may list users", policy = "admin", user = ADMIN,
    request = { method = "GET", path = "/users/", query = { limit = 5 } }, expect = "allow" },
  { name = "user may not list users", policy = "admin", user = USER,
    request = { method = "GET", path = "/users/" }, expect = "deny" },
  { name = "anonymous may not list users", policy = "admin", user = nil,
    request = { method = "GET", path = "/users/" }, expect = "deny" },
  { name = "admin may delete another account", policy = "admin", user = ADMIN,
    request = { method = "DELETE", path = users(OTHER) }, expect = "allow" },
  { name = "admin may delete its own account (the last admin is kept by the handler: 409)",
    policy = "admin", user = ADMIN,
    request = { method = "DELETE", path = users(ADMIN.id) }, expect = "allow" },
  { name = "user may not delete another account", policy = "admin", user = USER,
    request = { method = "DELETE", path = users(OTHER) }, expect = "deny" },
  { name = "user may not delete its own account", policy = "admin", user = USER,
    request = { method = "DELETE", path = users(USER.id) }, expect = "deny" },
  { name = "anonymous may not delete an account", policy = "admin", user = nil,
    request = { method = "DELETE", path = users(OTHER) }, expect = "deny" },

  -- admin_or_self: GET /users/{user_id}
  { name = "admin may read another account", policy = "admin_or_self", user = ADMIN,
    request = { method = "GET", path = users(OTHER) }, expect = "allow" },
  { name = "admin may read its own account", policy = "admin_or_self", user = ADMIN,
    request = { method = "GET", path = users(ADMIN.id) }, expect = "allow" },
  { name = "user may read its own account", policy = "admin_or_self", user = USER,
    request = { method = "GET", path = users(USER.id) }, expect = "allow" },
  { name = "user may read its own account with the id in capitals", policy = "admin_or_self",
    user = USER, request = { method = "GET", path = users(USER.id:upper()) }, expect = "allow" },
  { name = "user may not read another account", policy = "admin_or_self", user = USER,
    request = { method = "GET", path = users(OTHER) }, expect = "deny" },
  { name = "user may not read an account that does not exist", policy = "admin_or_self",
    user = USER, request = { method = "GET", path = users("000000000000000000000000") },
    expect = "deny" },
  { name = "anonymous may not read an account", policy = "admin_or_self", user = nil,
    request = { method = "GET", path = users(USER.id) }, expect = "deny" },

  -- admin_or_self_update: PUT /users/{user_id}
  { name = "admin may update another account", policy = "admin_or_self_update", user = ADMIN,
    request = { method = "PUT", path = users(OTHER), body = { userage = 40 } }, expect = "allow" },
  { name = "admin may update its own account", policy = "admin_or_self_update", user = ADMIN,
    request = { method = "PUT", path = users(ADMIN.id), body = { userage = 40 } },
    expect = "allow" },
  { name = "user may update its own account", policy = "admin_or_self_update", user = USER,
    request = { method = "PUT", path = users(USER.id), body = { userage = 31 } },
    expect = "allow" },
  { name = "user may not update another account", policy = "admin_or_self_update", user = USER,
    request = { method = "PUT", path = users(OTHER), body = { userage = 31 } }, expect = "deny" },
  { name = "anonymous may not update an account", policy = "admin_or_self_update", user = nil,
    request = { method = "PUT", path = users(USER.id), body = { userage = 31 } },
    expect = "deny" },

  -- the role rule: only an admin may send `role`
  { name = "user may not change its own role", policy = "admin_or_self_update", user = USER,
    request = { method = "PUT", path = users(USER.id), body = { role = "admin" } },
    expect = "deny" },
  { name = "user may not send its own role, even unchanged", policy = "admin_or_self_update",
    user = USER, request = { method = "PUT", path = users(USER.id), body = { role = "user" } },
    expect = "deny" },
  { name = "user may not change another account's role", policy = "admin_or_self_update",
    user = USER, request = { method = "PUT", path = users(OTHER), body = { role = "user" } },
    expect = "deny" },
  { name = "admin may change another account's role", policy = "admin_or_self_update",
    user = ADMIN, request = { method = "PUT", path = users(OTHER), body = { role = "admin" } },
    expect = "allow" },
  { name = "admin may change its own role (the last admin is kept by the handler: 409)",
    policy = "admin_or_self_update", user = ADMIN,
    request = { method = "PUT", path = users(ADMIN.id), body = { role = "user" } },
    expect = "allow" },

  -- admin: GET and POST /admin/reload on the public listener (app.lua's admin_policy)
  { name = "admin may see the reload status", policy = "admin", user = ADMIN,
    request = { method = "GET", path = "/admin/reload" }, expect = "allow" },
  { name = "admin may reload", policy = "admin", user = ADMIN,
    request = { method = "POST", path = "/admin/reload" }, expect = "allow" },
  { name = "user may not see the reload status", policy = "admin", user = USER,
    request = { method = "GET", path = "/admin/reload" }, expect = "deny" },
  { name = "user may not reload", policy = "admin", user = USER,
    request = { method = "POST", path = "/admin/reload" }, expect = "deny" },
  { name = "anonymous may not reload", policy = "admin", user = nil,
    request = { method = "POST", path = "/admin/reload" }, expect = "deny" },
} }
