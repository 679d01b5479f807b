-- luahost.policy_tests: policy tests, the one runner `luahost check`, the busted specs and (later)
-- every reload use.
--
-- A script module may return `tests`, a list of
--   { name = "...", policy = "<policy name>", user = <principal table, or nil: anonymous>,
--     request = { method = "GET", path = "/users/{id}", body = ..., query = {...}, headers = {...} },
--     expect = "allow" | "deny" }
-- The loader calls `collect` for each such module (the table's shape, reported at the test's file
-- and line) and `check_policies` once every policy is known. `run` routes each request through the
-- generation's real router (a `match(method, path)` function: the VM's C router, or the same code
-- as build/lua/luahost/router.so in the specs), so `req.params` come from the path as for a live
-- request, and hands it to luahost.runtime's own request function with the test's user standing in
-- for `authenticate` (nil: "not authenticated", so a policy that needs a caller denies) and the
-- route's handler replaced by a marker. The outcome is "allow" when the request reaches the
-- handler, "deny" with the status and code it got otherwise. Schemas are not applied: a test is
-- about who may do what, not about what input is valid (the runtime applies policies before
-- validation anyway, so the policy sees what it sees live).
local M = {}

local TEST_KEYS = { name = true, policy = true, user = true, request = true, expect = true,
                    description = true }
local REQUEST_KEYS = { method = true, path = true, body = true, query = true, headers = true }
local EXPECT = { allow = true, deny = true }

-- The 1-based line of the first place `needle` (plain text) occurs in src, or nil.
local function line_of(src, needle)
  if type(src) ~= "string" then return nil end
  local at = src:find(needle, 1, true)
  if not at then return nil end
  local line = 1
  for _ in src:sub(1, at):gmatch("\n") do line = line + 1 end
  return line
end

-- Where a test is written: the line of its quoted name in the file's source, else the line of the
-- module's `tests` key, else the file.
local function where_of(file, src, name)
  local line
  if type(name) == "string" and name ~= "" then
    line = line_of(src, '"' .. name .. '"') or line_of(src, "'" .. name .. "'")
  end
  if not line and type(src) == "string" then
    local key = src:match("tests%s*=")
    line = key and line_of(src, key)
  end
  return line and (file .. ":" .. line) or file
end

local function string_map(t, what)
  if type(t) ~= "table" then return nil, what .. " must be a table of names to values" end
  for k, v in pairs(t) do
    if type(k) ~= "string" then return nil, what .. " keys must be strings" end
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      return nil, what .. " '" .. k .. "' must be a string, a number or a boolean"
    end
  end
  return true
end

local function check_request(r)
  if type(r) ~= "table" then return "'request' must be a table" end
  for k in pairs(r) do
    if not REQUEST_KEYS[k] then return "request: unknown key '" .. tostring(k) .. "'" end
  end
  if type(r.method) ~= "string" or not r.method:match("^%u+$") then
    return "request: 'method' must be an HTTP method in capitals (\"GET\", \"PUT\", ...)"
  end
  if type(r.path) ~= "string" or r.path:sub(1, 1) ~= "/" then
    return "request: 'path' must be a path starting with '/'"
  end
  if r.path:find("?", 1, true) then
    return "request: 'path' has a query string: put it in 'query' (a table)"
  end
  if r.body ~= nil and type(r.body) ~= "table" and type(r.body) ~= "string" then
    return "request: 'body' must be a table (sent as JSON) or a string (the raw body)"
  end
  if r.query ~= nil then
    local ok, err = string_map(r.query, "request: 'query'")
    if not ok then return err end
  end
  if r.headers ~= nil then
    local ok, err = string_map(r.headers, "request: 'headers'")
    if not ok then return err end
  end
  return nil
end

-- collect(list, tests, file, src, seen): checks a module's `tests` and appends each to list as
-- { name, policy, user, request, expect, where }. seen maps names to where they were defined (a
-- name identifies a test in every report, so it is unique across the generation). Raises
-- "file:line: message".
function M.collect(list, tests, file, src, seen)
  if type(tests) ~= "table" then
    error(where_of(file, src) .. ": 'tests' must be a list of policy tests", 0)
  end
  local n = #tests
  for k in pairs(tests) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
      error(where_of(file, src) .. ": 'tests' must be a list of policy tests (found key '" ..
            tostring(k) .. "')", 0)
    end
  end
  for i, t in ipairs(tests) do
    local name = type(t) == "table" and t.name or nil
    local at = where_of(file, src, name)
    local label = type(name) == "string" and ("policy test '" .. name .. "'") or
                  ("policy test #" .. i)
    local function fail(msg) error(at .. ": " .. label .. ": " .. msg, 0) end
    if type(t) ~= "table" then fail("must be a table") end
    for k in pairs(t) do
      if not TEST_KEYS[k] then fail("unknown key '" .. tostring(k) .. "'") end
    end
    if type(name) ~= "string" or name == "" then fail("'name' must be a non-empty string") end
    if seen[name] then fail("a test of this name is already defined at " .. seen[name]) end
    if type(t.policy) ~= "string" then fail("'policy' must be the name of a policy") end
    if t.user ~= nil and type(t.user) ~= "table" then
      fail("'user' must be a principal table, or nil for an anonymous caller")
    end
    if not EXPECT[t.expect] then fail("'expect' must be \"allow\" or \"deny\"") end
    local err = check_request(t.request)
    if err then fail(err) end
    seen[name] = at
    list[#list + 1] = { name = name, policy = t.policy, user = t.user, request = t.request,
                        expect = t.expect, where = at }
  end
end

-- check_policies(gen): every test names a policy the generation has. Raises "file:line: ...".
function M.check_policies(gen)
  for _, t in ipairs(gen.tests or {}) do
    if not gen.policies[t.policy] then
      error(t.where .. ": policy test '" .. t.name .. "': unknown policy '" .. t.policy .. "'", 0)
    end
  end
end

local function url_escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local REACHED = {} -- what the stand-in handler returns: the request got past the policy

local function stand_in_handler() return REACHED end

-- The request table as vm_request.c builds it for a live request (fields eagerly set here).
local function build_request(t, params, json)
  local r = t.request
  local req = { method = r.method, path = r.path, params = params, client = "127.0.0.1",
                id = "policy-test", headers = {} }
  for k, v in pairs(r.headers or {}) do req.headers[k:lower()] = tostring(v) end
  if r.query then
    local keys, parts, query = {}, {}, {}
    for k in pairs(r.query) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      query[k] = tostring(r.query[k])
      parts[#parts + 1] = url_escape(k) .. "=" .. url_escape(query[k])
    end
    req.query, req.query_string = query, table.concat(parts, "&")
  end
  if r.body ~= nil then
    req.raw_body = type(r.body) == "table" and json.encode(r.body) or r.body
    if not req.headers["content-type"] then req.headers["content-type"] = "application/json" end
  end
  return req
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

local function label_of(t)
  return t.where .. ": policy test '" .. t.name .. "' (" .. t.policy .. ", " ..
         t.request.method .. " " .. t.request.path .. ")"
end

-- The label of the test running now: when the time budget stops the run (no Lua runs after that
-- in the run's coroutine), the host reads it to say which test it was (host/vm_tests.c).
M.current = nil

-- One test: nil, or the failure's text.
local function run_one(gen, match, runtime, json, t)
  local r = t.request
  local label = label_of(t)
  local id, params = match(r.method, r.path)
  if not id then
    return label .. ": the request matches no route (" ..
           (params == "method_not_allowed" and "the path exists, not for " .. r.method or
            "no route has this path") .. ")"
  end
  local route = gen.routes[id]
  local route_policy = route.policy or "public"
  if route_policy ~= t.policy then
    return label .. ": the request is served by route '" .. route.name .. "' (" .. route.where ..
           "), whose policy is '" .. route_policy .. "', not '" .. t.policy .. "'"
  end
  local user = copy(t.user)
  local shadow_route = setmetatable({ handler = stand_in_handler, query = false, body = false },
                                    { __index = route })
  local shadow = setmetatable({
    routes = setmetatable({ [id] = shadow_route }, { __index = gen.routes }),
    authenticate = function()
      if user ~= nil then return user end
      return nil, "not_authenticated", "Not authenticated (the test has no user)"
    end,
    authenticate_where = t.where,
  }, { __index = gen })
  local req = build_request(t, params, json)
  local ok, status, body = pcall(runtime.new(shadow), id, req)
  if not ok then
    return label .. ": expected " .. t.expect .. ", got an error: " .. tostring(status)
  end
  local got, detail = "deny", ""
  if status == REACHED then
    got = "allow"
  else
    local data = type(body) == "table" and body.response_data
    local code = type(data) == "table" and data.code or
                 (type(data) == "table" and data.errors and "validation_failed") or nil
    detail = " (" .. tostring(status) .. (code and (" " .. tostring(code)) or "") .. ")"
  end
  if got ~= t.expect then
    return label .. ": expected " .. t.expect .. ", got " .. got .. detail
  end
  return nil
end

local function count_policies(gen)
  local n = 0
  for name in pairs(gen.policies) do
    if name ~= "public" then n = n + 1 end
  end
  return n
end

-- run(gen, match) -> ok, text. Runs every test of the generation in order; text is a one-line
-- summary ("7 routes, 4 policies, 40 policy tests passed") when all pass, else one line per
-- failing test ("file:line: policy test 'name' (policy, METHOD path): expected allow, got deny
-- (403 forbidden)") and a count.
function M.run(gen, match)
  local runtime = require "luahost.runtime"
  local json = require "luahost.json"
  local tests = gen.tests or {}
  local failures = {}
  for _, t in ipairs(tests) do
    M.current = label_of(t)
    local failure = run_one(gen, match, runtime, json, t)
    M.current = nil
    if failure then failures[#failures + 1] = failure end
  end
  if #failures > 0 then
    failures[#failures + 1] = #failures .. " of " .. #tests .. " policy tests failed"
    return false, table.concat(failures, "\n")
  end
  return true, #gen.routes .. " routes, " .. count_policies(gen) .. " policies, " .. #tests ..
               " policy tests passed"
end

return M
