-- routes/auth.lua: POST /login and POST /logout.
--
-- Owns: the login flow (form fields as the original FastAPI service took them, an attempt
-- reserved on the shared throttle counters before any hash work (lib/throttle.lua), one answer for every kind of failure, the token response exactly as the seed
-- shows it) and logout (revoking every token the caller holds).

local response = require "luahost.response"
local schemas = require "lib.schemas"
local users = require "lib.users"
local auth = require "lib.auth"
local throttle = require "lib.throttle"

-- One body and one header set for a wrong password, an unknown user and an unusable account:
-- nothing in the answer tells which it was.
local function bad_credentials()
  return response.error(401, "invalid_credentials", "Incorrect username or password",
                        { ["WWW-Authenticate"] = "Bearer" })
end

local function login(req)
  -- The route also accepts JSON so that a JSON body gets this explanation (422) instead of a bare
  -- 415: the contract is form fields, as OAuth2's password grant sends them.
  if req.body_kind ~= "form" then
    return response.validation_error({ {
      field = "", ["in"] = "body", code = "form_required",
      message = "Send username and password as form fields (application/x-www-form-urlencoded)",
    } })
  end
  local name, pw = req.body.username, req.body.password
  local name_key, addr = users.normalize(name), req.client

  -- The attempt is reserved before any hash work, on every host's shared counters.
  local allowed, ticket = throttle.reserve(name_key, addr)
  if not allowed then
    return response.error(429, "too_many_attempts",
                          "Too many failed login attempts, retry later",
                          { ["Retry-After"] = tostring(ticket) })
  end

  -- Whatever the check raises, the reservation is given back (not counted) before the error
  -- goes on: a ticket left open would hold its place in the counters and in worker memory.
  local done, user, err = pcall(users.check_password, name, pw)
  if not done then
    throttle.abandon(ticket)
    error(user, 0)
  end
  if not user then
    if err ~= "bad_credentials" then
      throttle.abandon(ticket)
      return nil, err
    end
    throttle.failed(ticket)
    return bad_credentials()
  end
  throttle.succeeded(ticket)
  -- The bare token object, not the envelope: OAuth2 clients (and the seed) expect exactly this.
  return 200, { access_token = auth.issue(user), token_type = "bearer" },
    { ["Cache-Control"] = "no-store" }
end

local function logout(req)
  local ok, err = users.revoke_tokens(req.user)
  if not ok then return nil, err end
  return response.ok("Logged out", nil)
end

return {
  routes = {
    { method = "POST", path = "/login", accepts = { "form", "json" }, body = schemas.login_form,
      name = "login",
      description = "Log in with a username and password\n\nForm fields username and password, " ..
        "as OAuth2's password grant sends them, give {access_token, token_type: \"bearer\"} " ..
        "(not the envelope). A JSON body gets 422.",
      responses = { 401, 429 }, returns = schemas.token, handler = login },
    { method = "POST", path = "/logout", policy = "authenticated", name = "logout",
      description = "Log out: every token the caller holds stops working", handler = logout },
  },
}
