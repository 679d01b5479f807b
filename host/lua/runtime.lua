-- luahost.runtime: what happens to one request between the C router and the handler, in the
-- order the API promises: authentication (401), the route's policy (403), body decoding (415),
-- query and body validation (422), and finally the handler. The C side creates one coroutine per
-- request and runs `run(route_index, req)` in it; the values returned here (status, body, headers)
-- are serialised in C.
local json = require "luahost.json"
local validate = require "luahost.validate"
local response = require "luahost.response"
local core = require "luahost"
local tasks = require("luahost.loader").tasks
local running = coroutine.running

local M = {}

local BEARER = { ["WWW-Authenticate"] = "Bearer" }
local log = require "luahost.log"
local errors = require "luahost.errors"

local function media_kind(ct)
  if not ct then return nil end
  local base = ct:match("^%s*([^;%s]+)")
  if not base then return nil end
  base = base:lower()
  if base == "application/json" or base:match("^application/[%w.%-]+%+json$") then return "json" end
  if base == "application/x-www-form-urlencoded" then return "form" end
  return base
end

-- A runtime error code from a binding or a script ("unavailable", ...) becomes its response.
local function error_response(err)
  local status, code, message, headers = response.status_for(err)
  return response.error(status, code, message, headers)
end

-- The hook convention, one for handlers, policies and `authenticate`: a hook returns its value
-- (a handler: status, body, headers; authenticate: the user; a policy: true), or `nil, code,
-- message` to refuse. A code the host's error-kind table knows (a runtime outcome such as
-- "unavailable") answers with that kind's status and Retry-After; any other code is the hook's own
-- refusal, answered with the hook's status (authenticate 401, a policy 403) and that code and
-- message. A handler's unknown code is an internal error: it is logged, never shown.
local warned_legacy = {}
local function refusal(where, status, default_code, default_message, code, message, extra)
  if type(code) == "number" then
    -- Deprecated shape `nil, status, code, message`: still honoured, logged once per hook.
    if not warned_legacy[where] then
      warned_legacy[where] = true
      log.warn(where .. ": returning `nil, status, code, message` is deprecated: return " ..
               "`nil, code, message` (see README, Writing scripts)")
    end
    return response.error(code, message or default_code, extra or default_message,
                          status == 401 and BEARER or nil)
  end
  if errors.kind(code) then return error_response(code) end
  return response.error(status, code or default_code, message or default_message,
                        status == 401 and BEARER or nil)
end

local function decode_body(route, req)
  local raw = req.raw_body
  if raw == nil then return true end
  local kind = media_kind(req.headers["content-type"])
  if not next(route.accepts) then
    return nil, { response.error(415, "unsupported_media_type", "This endpoint takes no request body") }
  end
  if not kind or not route.accepts[kind] then
    local names = {}
    if route.accepts.json then names[#names + 1] = "application/json" end
    if route.accepts.form then names[#names + 1] = "application/x-www-form-urlencoded" end
    return nil, { response.error(415, "unsupported_media_type",
                                 "Content-Type must be " .. table.concat(names, " or ")) }
  end
  local value, err, code
  if kind == "json" then
    value, err, code = json.decode(raw)
  else
    value, err, code = core.form_decode(raw)
  end
  if value == nil and err then
    -- Past the decoded-size bounds (max_body_values, max_body_decoded_bytes) the body is too
    -- large, like one past max_body_bytes: 413 with the same code, whatever its syntax.
    if code == "too_large" then
      return nil, { response.error(413, "body_too_large", "The request body is too large: " .. err) }
    end
    if kind == "json" then
      return false, { { field = "", ["in"] = "body", code = "invalid_json",
                        message = "Malformed JSON body: " .. err } }
    end
    return false, { { field = "", ["in"] = "form", code = "invalid_form",
                      message = "Malformed form body: " .. err } }
  end
  req.body = value
  req.body_kind = kind
  return true
end

-- What a policy's `allow` gets as req: the request, with `body` decoded on first read.
local function lazy_body_view(req, decode)
  local done = false
  return setmetatable({}, {
    __index = function(_, k)
      if k == "body" and not done then
        done = true
        decode()
      end
      return req[k]
    end,
    __newindex = req,
    __metatable = false,
  })
end

local function run_policy(gen, route, req, decode)
  local pol = route.policy_spec
  if pol.authenticated then
    local user, code, message, extra = gen.authenticate(req)
    if not user then
      return refusal(gen.authenticate_where, 401, "unauthorized", "Not authenticated", code,
                     message, extra)
    end
    req.user = user
  end
  if pol.allow then
    local view = req.raw_body ~= nil and lazy_body_view(req, decode) or req
    local ok, code, message, extra = pol.allow(req.user, view)
    if not ok then
      return refusal(pol.where, 403, "forbidden", "You are not allowed to do this", code, message,
                     extra)
    end
  end
  return nil
end

-- Appends e to the list (created on the first problem: a valid request allocates none).
local function add(list, e)
  list = list or {}
  list[#list + 1] = e
  return list
end

local function validate_input(route, req, body_errors)
  local problems
  if route.query then
    local args, err = core.form_decode(req.query_string or "")
    if not args then
      problems = add(problems, { field = "", ["in"] = "query", code = "invalid_query",
                                 message = "Malformed query string: " .. err })
    else
      local values, errs = validate.query(route.query, args)
      if values then req.query = values else
        for _, e in ipairs(errs) do problems = add(problems, e) end
      end
    end
  end
  if body_errors then
    for _, e in ipairs(body_errors) do problems = add(problems, e) end
  elseif route.body then
    if req.body == nil then
      problems = add(problems, { field = "", ["in"] = "body", code = "missing_body",
                                 message = "A request body is required" })
    else
      local check = req.body_kind == "form" and validate.form or validate.body
      local values, errs = check(route.body, req.body)
      if values then req.body = values else
        for _, e in ipairs(errs) do problems = add(problems, e) end
      end
    end
  end
  if problems then return response.validation_error(problems) end
  return nil
end

function M.new(gen)
  local routes = gen.routes
  return function(index, req)
    tasks[running()] = true
    local route = routes[index]
    req.route = route.name
    -- The body is decoded after authentication: an anonymous client never makes the host build
    -- tables of its bytes. A policy that reads req.body decodes it then; one that refuses
    -- without reading it never does.
    local decoded, body_errors
    -- (only a policy's `allow` can read the body early: no closure per request otherwise)
    local status, body, headers = run_policy(gen, route, req, route.policy_spec.allow and function()
      decoded, body_errors = decode_body(route, req)
    end)
    if status then return status, body, headers end
    if decoded == nil and body_errors == nil then decoded, body_errors = decode_body(route, req) end
    if decoded == nil then return unpack(body_errors, 1, 3) end
    status, body, headers = validate_input(route, req, (not decoded) and body_errors or nil)
    if status then return status, body, headers end
    status, body, headers = route.handler(req)
    if status == nil then
      -- `return nil, err` from a handler: a runtime outcome such as a database outage. A code the
      -- error-kind table does not know is a 500; the client never sees it, the log does.
      if not errors.kind(body) then
        log.error("route " .. route.name .. ": the handler failed: " .. tostring(body) ..
                  " (request " .. tostring(req.id) .. ")")
      end
      return error_response(body)
    end
    return status, body, headers
  end
end

-- The start-up hooks, one after the other: true, or nil and the first failure.
function M.start_runner(gen)
  return function()
    tasks[running()] = true
    for _, hook in ipairs(gen.on_start) do
      local ok, res, err = pcall(hook.fn)
      if not ok then return nil, hook.where .. ": " .. tostring(res) end
      if res == nil and err ~= nil then return nil, hook.where .. ": " .. tostring(err) end
    end
    return true
  end
end

-- A command run from the command line: returns ok, and the result encoded as JSON.
function M.command_runner(gen)
  return function(name, args)
    tasks[running()] = true
    local fn = gen.commands[name]
    if not fn then
      local names = {}
      for n in pairs(gen.commands) do names[#names + 1] = n end
      table.sort(names)
      return false, json.encode({ ok = false, error = "unknown command '" .. name .. "'",
                                  commands = json.array(names) })
    end
    local res, err = fn(args)
    if res == nil then
      return false, json.encode({ ok = false, error = tostring(err) })
    end
    return type(res) ~= "table" or res.ok ~= false, json.encode(res)
  end
end

return M
