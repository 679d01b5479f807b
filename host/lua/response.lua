-- luahost.response: builders for what a handler returns (status, body, headers).
--
-- Owns: the response envelope's Lua shape ({ message, response_status, response_data }) and the
-- helpers for the common statuses. The mapping from a runtime error code to the status, code,
-- message and Retry-After a client sees is the host's error-kind table (host/response.c), read
-- here through the internal module luahost.errors (status_for, retryable). Serialising the
-- envelope is C's job; this module only decides its contents.

local json = require "luahost.json"
local errors = require "luahost.errors"

local type, error, floor = type, error, math.floor

local NULL = json.null
local array = json.array

local _M = {}

local function check_status(status, fname)
  if type(status) ~= "number" or status ~= floor(status) or status < 100 or status > 599 then
    error(fname .. ": status must be an integer from 100 to 599", 3)
  end
end

local function check_args(fname, message, headers)
  if type(message) ~= "string" then error(fname .. ": message must be a string", 3) end
  if headers ~= nil and type(headers) ~= "table" then
    error(fname .. ": headers must be a table or nil", 3)
  end
end

local function build(status, message, data, headers)
  -- nil data still yields the key: clients always see response_data, as null.
  if data == nil then data = NULL end
  return status, { message = message, response_status = status < 400, response_data = data },
    headers
end

-- response.envelope(status, message, data, headers) -> status, body, headers
function _M.envelope(status, message, data, headers)
  check_status(status, "envelope")
  check_args("envelope", message, headers)
  return build(status, message, data, headers)
end

-- response.ok(message, data, headers) -> 200 envelope
function _M.ok(message, data, headers)
  check_args("ok", message, headers)
  return build(200, message, data, headers)
end

-- response.created(message, data, headers) -> 201 envelope
function _M.created(message, data, headers)
  check_args("created", message, headers)
  return build(201, message, data, headers)
end

-- response.list(message, items, headers) -> 200 envelope whose data is the array items
-- (marked in place, so an empty page is encoded as [] and not {}).
function _M.list(message, items, headers)
  check_args("list", message, headers)
  if type(items) ~= "table" then error("list: items must be a table", 2) end
  return build(200, message, array(items), headers)
end

-- response.error(status, code, message, headers) -> error envelope with data { code = code }
function _M.error(status, code, message, headers)
  check_status(status, "error")
  if status < 400 then error("error: status must be 400 or above", 2) end
  if type(code) ~= "string" or code == "" then error("error: code must be a non-empty string", 2) end
  check_args("error", message, headers)
  return build(status, message, { code = code }, headers)
end

-- response.validation_error(errors) -> 422 envelope listing every error
function _M.validation_error(errors)
  if type(errors) ~= "table" then error("validation_error: errors must be a table", 2) end
  return build(422, "Request validation failed", { errors = array(errors) }, nil)
end

-- response.status_for(err) -> status, code, message, headers
-- A code the host's error-kind table does not know is an internal error; the raw error is never
-- shown, since it may carry driver messages, hosts or query fragments (the runtime logs it).
function _M.status_for(err)
  local status, code, message, retry = errors.kind(err)
  if not status then status, code, message, retry = errors.kind("internal_error") end
  -- A fresh table per call: callers may add headers to what they get back.
  return status, code, message, retry > 0 and { ["Retry-After"] = tostring(retry) } or nil
end

-- response.retryable(err) -> true when err is an outcome worth trying again (it has a
-- Retry-After), e.g. "unavailable", "timeout", "overloaded".
function _M.retryable(err)
  local status, _, _, retry = errors.kind(err)
  return status ~= nil and retry > 0
end

return _M
