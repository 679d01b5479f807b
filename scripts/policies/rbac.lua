-- policies/rbac.lua: who may do what to which user account.
--
-- Owns: the permissions of each role (data), the ownership rule "self" (a user acting on its
-- own account), the pure functions that decide, and the named policies routes refer to. The roles
-- themselves are lib/schemas.lua's ROLES (what a stored role may be); who the caller is comes from
-- the application's `authenticate` hook (app.lua).
--
-- Every decision here is a pure function of (user, request): no database, no clock, so it is
-- tested on its own (tests/spec/rbac_spec.lua; the policy tests in policies/rbac_tests.lua run it
-- through the real routes) and runs before any record is touched. That is
-- what makes "a non-admin asking for another user's id gets 403 whether or not it exists" hold:
-- ownership is decided by comparing ids, never by looking the target up.
--
-- To change the rules, edit PERMISSIONS: each action lists the roles allowed on any account and
-- whether an account's owner may do it to itself. Every policy below decides through PERMISSIONS.

local schemas = require "lib.schemas"

local type = type

local M = {}

M.ROLES = schemas.ROLES

-- action -> { any = {roles allowed on every account}, self = owner allowed on its own account }
M.PERMISSIONS = {
  ["users.list"]     = { any = { admin = true } },
  ["users.create"]   = { any = { admin = true } },
  ["users.read"]     = { any = { admin = true }, self = true },
  ["users.update"]   = { any = { admin = true }, self = true },
  ["users.set_role"] = { any = { admin = true } },
  ["users.delete"]   = { any = { admin = true } },
}

-- is_self(user, target_id) -> boolean. Ids are compared as lower-case hex, so an owner who types
-- its id in capitals is still itself. A missing or malformed id is nobody's.
function M.is_self(user, target_id)
  if type(user) ~= "table" or type(user.id) ~= "string" or type(target_id) ~= "string" then
    return false
  end
  return #target_id == 24 and target_id:lower() == user.id:lower()
end

-- can(user, action, target_id) -> boolean. Unknown actions and unknown roles (say, a role left by
-- an older service in migrated data) are denied: permissions are granted, never assumed.
function M.can(user, action, target_id)
  local rule = M.PERMISSIONS[action]
  if not rule or type(user) ~= "table" then return false end
  if type(user.role) == "string" and rule.any and rule.any[user.role] then return true end
  return rule.self == true and M.is_self(user, target_id)
end

-- True when the request body tries to set a role; a JSON null counts as trying. The body here is
-- the decoded, not yet validated one (policies run before validation, as 403 comes before 422).
local function sends_role(req)
  local body = req.body
  return type(body) == "table" and rawget(body, "role") ~= nil
end

-- Policy functions, in the hook convention (luahost.runtime): (user, req) -> true | nil, code,
-- message. A refusal with a code of its own answers 403.
-- The admin-only actions (list, create, delete) share one rule: any account, admins only.
local function admin(user)
  if M.can(user, "users.list") then return true end
  return nil, "forbidden", "Admin privileges required"
end

local function admin_or_self(user, req)
  if M.can(user, "users.read", req.params and req.params.user_id) then return true end
  return nil, "forbidden", "You can only access your own account"
end

local function update_user(user, req)
  local target = req.params and req.params.user_id
  if not M.can(user, "users.update", target) then
    return nil, "forbidden", "You can only update your own account"
  end
  if sends_role(req) and not M.can(user, "users.set_role", target) then
    return nil, "forbidden", "Only an admin can change a role"
  end
  return true
end

M.admin, M.admin_or_self, M.update_user = admin, admin_or_self, update_user

return {
  policies = {
    -- Any caller with a valid token (POST /logout).
    authenticated = { authenticated = true },
    -- Admins only (listing, creating, deleting users).
    admin = { authenticated = true, allow = admin },
    -- Admins, or the owner of the account in the path (GET /users/{user_id}).
    admin_or_self = { authenticated = true, allow = admin_or_self },
    -- As admin_or_self, and only admins may send a role (PUT /users/{user_id}).
    admin_or_self_update = { authenticated = true, allow = update_user },
  },
  -- The decision functions themselves, for specs and for other scripts.
  rbac = M,
}
