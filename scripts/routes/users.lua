-- routes/users.lua: the /users resource: create, list, read, update, delete.
--
-- Owns: the routes of the user API as the seed specifies them (paths, messages, status codes) and
-- the mapping of lib/users.lua's outcomes to responses. Who may call what is declared here by
-- policy name and decided in policies/rbac.lua; input rules live in lib/schemas.lua. By the time a
-- handler runs, the runtime has authenticated the caller (401), applied the policy (403) and
-- validated the input (422), so handlers only do the work and answer 404/409.

local response = require "luahost.response"
local schemas = require "lib.schemas"
local users = require "lib.users"

local tostring = tostring

-- Outcomes of lib/users.lua that are the client's business; anything else (a database outage)
-- goes back to the runtime as `nil, err`, which answers 503 or 500 in the envelope.
local OUTCOMES = {
  not_found = { 404, "not_found", "User not found" },
  username_taken = { 409, "username_taken", "Username already registered" },
  last_admin = { 409, "last_admin", "The last admin cannot be removed or demoted" },
}

local function fail(err, why)
  local o = OUTCOMES[err]
  if o then return response.error(o[1], o[2], o[3]) end
  if err == "bad_username" then
    -- The schema refuses such names first (422); this answers the same if a name ever reaches
    -- lib/users.lua another way, instead of a 500.
    local code, message = schemas.username_problem(why)
    return response.validation_error({ {
      field = "username", ["in"] = "body", code = code, message = message,
    } })
  end
  if err == "weak_password" then
    -- Only a bcrypt-configured host refuses a valid password: it cannot use more than 72 bytes.
    return response.validation_error({ {
      field = "password", ["in"] = "body", code = "too_long",
      message = "password must be at most 72 bytes with the configured hashing scheme",
    } })
  end
  return nil, err
end

local function create_user(req)
  local doc, err, why = users.create(req.body)
  if not doc then return fail(err, why) end
  return response.created("User created successfully", users.serialize(doc))
end

local function list_users(req)
  local docs, total = users.list(req.query)
  if not docs then return fail(total) end
  local items = {}
  for i, doc in ipairs(docs) do items[i] = users.serialize(doc) end
  return response.list("Users fetched successfully", items,
                       { ["X-Total-Count"] = tostring(total) })
end

local function get_user(req)
  local id = req.params.user_id
  -- The caller's own record was read from the database for this very request (authentication
  -- does that), so asking for oneself needs no second query.
  if req.user.id == id then
    return response.ok("User fetched successfully", users.public_view(req.user))
  end
  local doc, err = users.find(id)
  if err then return nil, err end
  if not doc then return fail("not_found") end
  return response.ok("User fetched successfully", users.serialize(doc))
end

local function update_user(req)
  local doc, err, why = users.update(req.params.user_id, req.body)
  if not doc then return fail(err, why) end
  return response.ok("User updated successfully", users.serialize(doc))
end

local function delete_user(req)
  local ok, err = users.delete(req.params.user_id)
  if not ok then return fail(err) end
  return response.ok("User deleted successfully", nil)
end

return {
  routes = {
    { method = "POST", path = "/users/create", policy = "admin", body = schemas.create_user,
      name = "users.create", description = "Create a user (admins)",
      responses = { 201, 409 }, handler = create_user },
    { method = "GET", path = "/users/", policy = "admin", query = schemas.list_query,
      name = "users.list",
      description = "List users, filtered, sorted and paged (admins); the total is in " ..
        "X-Total-Count",
      handler = list_users },
    { method = "GET", path = "/users/{user_id}", name = "users.read",
      description = "Read a user (admins, or the user itself)",
      policy = "admin_or_self", handler = get_user },
    { method = "PUT", path = "/users/{user_id}", policy = "admin_or_self_update",
      body = schemas.update_user, name = "users.update",
      description = "Update a user (admins, or the user itself; only admins change a role)",
      responses = { 409 }, handler = update_user },
    { method = "DELETE", path = "/users/{user_id}", policy = "admin", name = "users.delete",
      description = "Delete a user (admins; never the last admin)", responses = { 409 },
      handler = delete_user },
  },
}
