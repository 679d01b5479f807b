-- luahost.response: builders for what a handler returns (status, body, headers).
--
-- Owns: the response envelope's Lua shape ({ message, response_status, response_data }), the
-- helpers for the common statuses, and the mapping from a binding's runtime error code to the
-- status, code and message a client sees (status_for). Serialising the envelope is C's job; this
-- module only decides its contents.

local json = require "luahost.json"

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

-- Runtime outcomes that mean "try again": the status and advice a client gets for each.
local RETRYABLE = {
  overloaded  = { 503, "overloaded", "The server is busy, retry later", "1" },
  unavailable = { 503, "service_unavailable", "The service is temporarily unavailable, retry later", "5" },
  timeout     = { 503, "timeout", "The request timed out, retry later", "5" },
}

-- response.status_for(err) -> status, code, message, headers
-- Anything not known to be retryable is an internal error; the raw error is never shown, since
-- it may carry driver messages, hosts or query fragments (the runtime logs it instead).
function _M.status_for(err)
  local r = RETRYABLE[err]
  if r then
    -- A fresh table per call: callers may add headers to what they get back.
    return r[1], r[2], r[3], { ["Retry-After"] = r[4] }
  end
  return 500, "internal_error", "Internal server error", nil
end

-- response.runtime_error(err) -> status, body, headers: status_for wrapped in the error envelope,
-- for handlers that get `nil, err` from a binding and just pass the outcome on.
function _M.runtime_error(err)
  local status, code, message, headers = _M.status_for(err)
  return build(status, message, { code = code }, headers)
end

return _M
