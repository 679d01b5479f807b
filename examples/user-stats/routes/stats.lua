-- routes/stats.lua (examples/user-stats): a new route with its query schema and its policy tests.
--
-- GET /stats/users?min_age=&max_age=&role= answers how many accounts there are, by role, within
-- an age range. Admins only (the `admin` policy of policies/rbac.lua). The schema is the whole of
-- the input handling: the runtime answers 422 for an unknown parameter, a non-integer or
-- out-of-range age, a role that is not one of lib/schemas.lua's ROLES, or min_age above max_age,
-- before the handler runs; the handler only ever sees typed values with the defaults filled in.
local mongo = require "luahost.mongo"
local response = require "luahost.response"
local schemas = require "lib.schemas"
local settings = require "lib.settings"
local users = require "lib.users"

local stats_query = {
  fields = {
    min_age = { type = "integer", min = 0, max = 150, default = 0 },
    max_age = { type = "integer", min = 0, max = 150, default = 150 },
    role = { type = "string", enum = schemas.ROLES },
  },
  -- The cross-field rule: it runs once every field is valid, so both ages are integers here.
  check = function(q)
    if q.min_age > q.max_age then
      return false, "min_age", "range", "min_age must be less than or equal to max_age"
    end
    return true
  end,
}

local function user_stats(req)
  local q = req.query
  local coll = mongo.collection(settings.get("users_collection"))
  local roles = q.role and { q.role } or schemas.ROLES
  local by_role, total = {}, 0
  for _, role in ipairs(roles) do
    -- lib/users.lua builds the same age filter GET /users/ uses.
    local filter = users.list_filter({ min_age = q.min_age, max_age = q.max_age })
    filter.role = role
    local n, err = coll:count_documents(filter)
    if not n then return nil, err end -- the runtime answers 503 or 500 in the envelope
    by_role[role] = n
    total = total + n
  end
  return response.ok("User statistics", {
    total = total, by_role = by_role, min_age = q.min_age, max_age = q.max_age,
  })
end

local ADMIN = { id = "65a1b2c3d4e5f60718293a4b", username = "root", role = "admin" }
local USER = { id = "65a1b2c3d4e5f60718293a4c", username = "alice", role = "user" }

return {
  routes = {
    { method = "GET", path = "/stats/users", policy = "admin", query = stats_query,
      handler = user_stats },
  },
  -- Who may call the new route, checked by `luahost check` like policies/rbac_tests.lua.
  tests = {
    { name = "admin may read the user statistics", policy = "admin", user = ADMIN,
      request = { method = "GET", path = "/stats/users", query = { min_age = 18 } },
      expect = "allow" },
    { name = "user may not read the user statistics", policy = "admin", user = USER,
      request = { method = "GET", path = "/stats/users" }, expect = "deny" },
    { name = "anonymous may not read the user statistics", policy = "admin", user = nil,
      request = { method = "GET", path = "/stats/users" }, expect = "deny" },
  },
}
