-- lib/auth.lua: bearer tokens: issuing them at login and turning one back into a user.
--
-- Owns: the token's claims (sub = the user id as 24 hex digits, tv = the user's token_version;
-- the host adds iat, exp, iss and aud and pins HS256 with typ in the header) and the lookup that
-- authenticates a request. app.lua hands `from_request` to the runtime as the application's
-- `authenticate` hook.
--
-- Nothing about the caller is trusted from the token except who they are: the role and the token
-- version are read from the database on every request, so a demotion, a deletion, a password
-- change or a logout takes effect on the very next request.

local jwt = require "luahost.jwt"
local users = require "lib.users"

local type = type

local M = {}

-- Every refusal uses one of these; the runtime answers 401 with WWW-Authenticate: Bearer.
local MISSING = { "not_authenticated", "Not authenticated" }
local INVALID = { "invalid_token", "Could not validate credentials" }
local EXPIRED = { "token_expired", "The token has expired" }
local REVOKED = { "token_revoked", "The token has been revoked" }

local function deny(why)
  return nil, why[1], why[2]
end

-- issue(principal) -> token
function M.issue(user)
  return jwt.sign({ sub = user.id, tv = user.token_version or 0 })
end

-- The token of an Authorization header, or nil. The scheme is case-insensitive (RFC 7235).
function M.bearer_token(header)
  if type(header) ~= "string" then return nil end
  local scheme, token = header:match("^%s*(%S+)%s+(%S+)%s*$")
  if not scheme or scheme:lower() ~= "bearer" then return nil end
  return token
end

-- from_request(req) -> principal | nil, code, message (401) | nil, err (database trouble: 503)
function M.from_request(req)
  local header = req.headers.authorization
  if header == nil then return deny(MISSING) end
  local token = M.bearer_token(header)
  if not token then return deny(INVALID) end
  local claims, why = jwt.verify(token)
  if not claims then return deny(why == "expired" and EXPIRED or INVALID) end
  if type(claims.sub) ~= "string" or type(claims.tv) ~= "number" then return deny(INVALID) end
  local doc, err = users.find(claims.sub)
  if err then return nil, err end
  -- A deleted user's tokens are as dead as revoked ones.
  if not doc then return deny(REVOKED) end
  local user = users.principal(doc)
  if user.token_version ~= claims.tv then return deny(REVOKED) end
  return user
end

return M
