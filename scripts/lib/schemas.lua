-- lib/schemas.lua: the validation schemas of the user service, as data (see luahost.validate).
--
-- Owns: the field rules every user-facing input goes through (usernames, passwords, ages, roles),
-- the login form, the create and update bodies and the list query. Routes name these tables; the
-- runtime checks them before a handler runs, so handlers only ever see typed, bounded values and
-- nothing a client sent reaches a MongoDB filter or update unchecked.
--
-- Unknown fields are refused everywhere (the validator's default), except the OAuth2 password-grant
-- fields of the login form, which are declared so clients built for the original FastAPI service
-- (OAuth2PasswordRequestForm) keep working; their values are ignored.

local validate = require "luahost.validate"
local unicode = require "luahost.unicode"

local M = {}

M.ROLES = { "user", "admin" }
M.SORT_FIELDS = { "username", "userage", "created_at" }

-- The identity rules of a name (lua-bindings/unicode.h), on its NFC form: the code and message
-- of the 422. lib/users.lua applies the same rules again before it stores a name.
local NAME_MESSAGES = {
  bad_utf8 = "username is not valid UTF-8",
  control = "username must not contain control characters or line breaks",
  format = "username must not contain invisible formatting characters (zero-width, bidi)",
  unassigned = "username must not contain unassigned code points",
  private_use = "username must not contain private-use characters",
  surrogate = "username must not contain surrogate code points",
  whitespace_edge = "username must not start or end with white space or invisible characters",
  whitespace_run = "username must not hold two white-space characters in a row",
  empty = "username must not be empty or made only of invisible characters",
  mixed_script = "username mixes scripts beyond UTS #39 'moderately restrictive' (one " ..
                 "script; Latin with Han and Kana or Hangul; or Latin with one other script " ..
                 "except Cyrillic and Greek)",
  invisible = "username repeats a combining mark",
}

-- username_problem(why) -> code, message: how a broken identity rule reads in a 422.
function M.username_problem(why)
  return why, NAME_MESSAGES[why] or "username is not allowed"
end

function M.check_username(v)
  local nfc, err = unicode.nfc(v)
  local ok, why = false, err
  if nfc then ok, why = unicode.check_name(nfc) end
  if ok then return true end
  return false, M.username_problem(why)
end

-- One definition per rule, so create, update and the admin bootstrap cannot drift apart.
local function username(required)
  return { type = "string", required = required or nil, min_len = 1, max_len = 64,
           no_control = true, check = M.check_username }
end

local function password(required)
  return { type = "string", required = required or nil, min_len = 8, max_len = 128 }
end

local function userage(required)
  return { type = "integer", required = required or nil, min = 0, max = 150 }
end

-- POST /users/create
M.create_user = {
  fields = {
    username = username(true),
    password = password(true),
    userage = userage(true),
    role = { type = "string", enum = M.ROLES, default = "user" },
  },
}

-- PUT /users/{user_id}: any subset of the create fields, but at least one of them. Whether the
-- caller may send `role` is the policy's decision (403), not validation's.
M.update_user = {
  fields = {
    username = username(false),
    password = password(false),
    userage = userage(false),
    role = { type = "string", enum = M.ROLES },
  },
  check = function(values)
    if next(values) == nil then
      return false, "", "empty",
        "Send at least one of username, password, userage, role"
    end
    return true
  end,
}

-- POST /login. Create-time password rules do not apply: an account made before a rule changed must
-- still be able to log in, and a wrong guess is a 401, not a hint about the rules. The upper bounds
-- only keep absurd inputs away from the hashing pool and the throttle's keys.
-- What a successful login answers (not the envelope: OAuth2 clients expect exactly this), for the
-- API's description (/openapi.json).
M.token = {
  fields = {
    access_token = { type = "string", required = true },
    token_type = { type = "string", required = true, enum = { "bearer" } },
  },
}

M.login_form = {
  fields = {
    username = { type = "string", required = true, max_len = 256 },
    password = { type = "string", required = true, max_len = 1024 },
    grant_type = { type = "string", max_len = 64 },
    scope = { type = "string", max_len = 1024 },
    client_id = { type = "string", max_len = 256 },
    client_secret = { type = "string", max_len = 256 },
  },
}

-- GET /users/
M.list_query = {
  fields = {
    -- Matched as a literal substring; lib/users.lua escapes it before it becomes a regex.
    username = { type = "string", max_len = 64, no_control = true },
    min_age = { type = "integer", min = 0, max = 150 },
    max_age = { type = "integer", min = 0, max = 150 },
    skip = { type = "integer", min = 0, max = 10000, default = 0 },
    limit = { type = "integer", min = 1, max = 100, default = 10 },
    sort_by = { type = "string", enum = M.SORT_FIELDS, default = "username" },
    sort_order = { type = "string", enum = { "asc", "desc" }, default = "asc" },
  },
  check = function(q)
    if q.min_age and q.max_age and q.min_age > q.max_age then
      return false, "min_age", "range", "min_age must be less than or equal to max_age"
    end
    return true
  end,
}

-- Validates the admin bootstrap credentials from the configuration with the same rules a client
-- gets, so the first admin cannot be weaker than any later user. Returns true or nil, message.
function M.check_bootstrap(name, pw, age)
  local function fail(what) return nil, "admin bootstrap: " .. what end
  local n = type(name) == "string" and validate.utf8_len(name)
  if not n or n < 1 or n > 64 or name:find("[%z\1-\31\127]") then
    return fail("LUAHOST_ADMIN_USERNAME must be 1 to 64 characters without control characters")
  end
  local fine, _, why = M.check_username(name)
  if not fine then return fail("LUAHOST_ADMIN_USERNAME: " .. why) end
  n = type(pw) == "string" and validate.utf8_len(pw)
  if not n or n < 8 or n > 128 then
    return fail("LUAHOST_ADMIN_PASSWORD must be 8 to 128 characters")
  end
  if type(age) ~= "number" or age ~= math.floor(age) or age < 0 or age > 150 then
    return fail("LUAHOST_ADMIN_USERAGE must be an integer from 0 to 150")
  end
  return true
end

return M
