-- luahost.openapi: the API description (OpenAPI 3.1) of one generation, built from its route
-- declarations when the generation loads (host/vm.c keeps the encoded text; /openapi.json serves
-- it, host/docs.c).
--
-- Owns: turning a route (method, path, name, description, policy, query and body schemas, accepts,
-- responses) into an operation; which error statuses a route can give; the envelope schemas; and
-- an encoder that keeps the document's key order (paths in declaration order, which Swagger UI
-- shows as is). The schema language it reads is luahost.validate's (fields with type, bounds,
-- lengths, enums, defaults); Lua patterns are not ECMAScript regular expressions, so a field's
-- pattern is carried as `x-lua-pattern`, never as `pattern`.
--
-- Which error statuses an operation lists, from its declaration (the order luahost.runtime answers
-- them in): a policy that needs a user -> 401; a policy with an `allow` rule -> 403; path
-- parameters -> 404; a body schema -> 413, 415, 422 (and the request body itself, required); a
-- query schema ->
-- 422; every route -> 503 (a runtime outcome such as a database outage); and whatever the route
-- lists in `responses` (say 409 or 429, which only its handler knows it answers). A 2xx status in
-- `responses` replaces the default success status 200.
local json = require "luahost.json"

local type, pairs, ipairs, tostring, tonumber, select, setmetatable, error =
  type, pairs, ipairs, tostring, tonumber, select, setmetatable, error
local concat, sort = table.concat, table.sort
local encode_scalar, array, is_array, utf8_valid =
  json.encode, json.array, json.is_array, json.utf8_valid

local M = {}

-- ---------------------------------------------------------------------------------------------
-- Objects that keep their key order

local ORDER = setmetatable({}, { __mode = "k" })

-- obj("k1", v1, "k2", v2, ...): an object whose keys encode in this order; nil values are left out.
local function obj(...)
  local t, keys = {}, {}
  for i = 1, select("#", ...), 2 do
    local k, v = select(i, ...)
    if v ~= nil then
      t[k] = v
      keys[#keys + 1] = k
    end
  end
  ORDER[t] = keys
  return t
end

-- put(t, k, v): sets a key of an ordered object, appending it when new; a nil v leaves t as is.
local function put(t, k, v)
  if v == nil then return end
  if t[k] == nil then
    local keys = ORDER[t]
    keys[#keys + 1] = k
  end
  t[k] = v
end

local function encode_value(v, out)
  if type(v) == "string" and not utf8_valid(v) then
    -- The host's encoder passes bytes through; a description must be valid JSON text.
    error("openapi: a string of the declarations is not valid UTF-8: " ..
          encode_scalar((v:gsub("[\128-\255]", "?"))), 0)
  end
  if type(v) ~= "table" then
    out[#out + 1] = encode_scalar(v)
    return
  end
  if is_array(v) then
    out[#out + 1] = "["
    for i = 1, #v do
      if i > 1 then out[#out + 1] = "," end
      encode_value(v[i], out)
    end
    out[#out + 1] = "]"
    return
  end
  local keys = ORDER[v]
  if not keys then
    keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then error("openapi: object keys must be strings", 0) end
      keys[#keys + 1] = k
    end
    sort(keys)
  end
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    encode_value(k, out)
    out[#out + 1] = ":"
    encode_value(v[k], out)
  end
  out[#out + 1] = "}"
end

-- openapi.encode(doc) -> JSON text, objects made here in their order, other tables sorted.
function M.encode(doc)
  local out = {}
  encode_value(doc, out)
  return concat(out)
end

-- ---------------------------------------------------------------------------------------------
-- Schemas

local function ref(kind, name)
  return obj("$ref", "#/components/" .. kind .. "/" .. name)
end

local function copy_list(list)
  local c = {}
  for i, v in ipairs(list) do c[i] = v end
  return array(c)
end

-- One field of a luahost.validate schema as a JSON Schema (query and form values arrive as text;
-- the host converts them to the field's type before it checks them, so the type holds there too).
local function field_schema(name, f)
  local s = obj("type", f.type)
  if f.type == "integer" or f.type == "number" then
    put(s, "minimum", f.min)
    put(s, "maximum", f.max)
  elseif f.type == "string" then
    put(s, "minLength", f.min_len)
    put(s, "maxLength", f.max_len)
    if name == "password" then put(s, "format", "password") end
    if f.pattern then put(s, "x-lua-pattern", f.pattern) end
    if f.no_control then put(s, "x-luahost-no-control-characters", true) end
  end
  if f.enum then put(s, "enum", copy_list(f.enum)) end
  if f.default ~= nil then put(s, "default", f.default) end
  if f.check then put(s, "x-luahost-checked", true) end
  return s
end

local function sorted_names(fields)
  local names = {}
  for name in pairs(fields) do names[#names + 1] = name end
  sort(names)
  return names
end

-- A body schema as a JSON Schema object.
local function object_schema(schema)
  local props, required = obj(), {}
  for _, name in ipairs(sorted_names(schema.fields)) do
    local f = schema.fields[name]
    put(props, name, field_schema(name, f))
    if f.required then required[#required + 1] = name end
  end
  return obj("type", "object",
             "required", #required > 0 and array(required) or nil,
             "properties", props,
             "additionalProperties", schema.additional == true,
             "x-luahost-checked", schema.check and true or nil)
end

local function components()
  local code = obj("type", "object", "required", array({ "code" }),
                   "properties", obj("code", obj("type", "string")))
  local problem = obj("type", "object",
                      "required", array({ "field", "in", "code", "message" }),
                      "properties", obj("field", obj("type", "string"),
                                        "in", obj("type", "string",
                                                  "enum", array({ "path", "query", "body", "form" })),
                                        "code", obj("type", "string"),
                                        "message", obj("type", "string")))
  local function envelope(ok, data, description)
    return obj("type", "object",
               "description", description,
               "required", array({ "message", "response_status", "response_data" }),
               "properties", obj("message", obj("type", "string"),
                                 "response_status", obj("type", "boolean", "const", ok),
                                 "response_data", data))
  end
  return obj(
    "schemas", obj(
      "Envelope", envelope(true, obj(),
                           "Every answer of the service: a message, whether it succeeded and " ..
                           "its data (null when there is none)"),
      "ErrorEnvelope", envelope(false, code,
                                "An error: response_data.code names the condition"),
      "ValidationErrorEnvelope", envelope(false,
                                          obj("type", "object",
                                              "required", array({ "errors" }),
                                              "properties",
                                              obj("errors", obj("type", "array",
                                                                "items", problem))),
                                          "422: every problem with the request's input")),
    "securitySchemes", obj(
      "bearerAuth", obj("type", "http", "scheme", "bearer", "bearerFormat", "JWT",
                        "description", "The access_token that POST /login returns")))
end

-- ---------------------------------------------------------------------------------------------
-- Responses

local REASONS = {
  [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [400] = "Bad Request", [401] = "Not authenticated: no, bad, expired or revoked token",
  [403] = "Forbidden by the route's policy", [404] = "Not found", [405] = "Method not allowed",
  [409] = "Conflict", [410] = "Gone", [413] = "Request body too large",
  [415] = "Unsupported media type", [422] = "Request validation failed",
  [429] = "Too many requests, retry after Retry-After seconds",
  [500] = "Internal server error",
  [503] = "Temporarily unavailable, retry after Retry-After seconds",
}

local function header(description)
  return obj("description", description, "schema", obj("type", "string"))
end

local function error_response(status)
  local schema = status == 422 and ref("schemas", "ValidationErrorEnvelope")
                 or ref("schemas", "ErrorEnvelope")
  local headers
  if status == 401 then
    headers = obj("WWW-Authenticate", header("Bearer"))
  elseif status == 429 or status == 503 then
    headers = obj("Retry-After", header("Seconds to wait before trying again"))
  end
  return obj("description", REASONS[status] or ("Error " .. status),
             "headers", headers,
             "content", obj("application/json", obj("schema", schema)))
end

-- The statuses a route can answer with an error, sorted (see the top of this file).
function M.error_statuses(route, policy, nparams)
  local set = { [503] = true }
  if policy and policy.authenticated then set[401] = true end
  if policy and policy.allow then set[403] = true end
  if nparams > 0 then set[404] = true end
  if route.body then set[413], set[415], set[422] = true, true, true end
  if route.query then set[422] = true end
  for _, status in ipairs(route.responses or {}) do
    if status >= 400 then set[status] = true end
  end
  local list = {}
  for status in pairs(set) do list[#list + 1] = status end
  sort(list)
  return list
end

-- ---------------------------------------------------------------------------------------------
-- Operations

-- "/users/{user_id}/" -> { {text="users"}, {param="user_id"} }, and the trailing slash.
local function split_path(path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do
    local name = seg:match("^{(.+)}$")
    segs[#segs + 1] = name and { param = name } or { text = seg }
  end
  return segs
end

-- Equivalent paths (the router's rule: parameter names and a trailing slash do not matter) are
-- one path item, named as the first route declared it.
local function path_key(segs)
  local parts = {}
  for i, s in ipairs(segs) do parts[i] = s.param and "{}" or s.text end
  return "/" .. concat(parts, "/")
end

local function operation_id(name, used)
  local id = tostring(name):gsub("[^%w_.%-]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  if id == "" then id = "operation" end
  local base, n = id, 1
  while used[id] do
    n = n + 1
    id = base .. "_" .. n
  end
  used[id] = true
  return id
end

local function summary_of(route)
  local d = route.description
  if type(d) == "string" and d ~= "" then
    local first = d:match("^[^\n]*")
    local rest = d:sub(#first + 1):gsub("^%s+", "")
    return first, rest ~= "" and rest or nil
  end
  return route.name, nil
end

local MEDIA = { json = "application/json", form = "application/x-www-form-urlencoded" }

local function request_body(route)
  if not route.body then return nil end
  local kinds = {}
  if route.accepts_order then
    for _, k in ipairs(route.accepts_order) do kinds[#kinds + 1] = k end
  else
    if route.accepts.json then kinds[#kinds + 1] = "json" end
    if route.accepts.form then kinds[#kinds + 1] = "form" end
  end
  if #kinds == 0 then return nil end
  local schema = object_schema(route.body)
  local content = obj()
  for _, k in ipairs(kinds) do
    if not content[MEDIA[k]] then put(content, MEDIA[k], obj("schema", schema)) end
  end
  return obj("required", true, "content", content)
end

-- The operation's tag: the script module that declares the route ("routes/users.lua:80" ->
-- "users"), else the path's first segment.
local function tag_of(route)
  local module = type(route.where) == "string" and route.where:match("([^/]+)%.lua:%d+$")
  if module then return module end
  local first = route.path:match("^/([^/{}]+)")
  return first
end

local function operation(route, policy_name, policy, param_names, used_ids)
  local params = {}
  for _, name in ipairs(param_names) do
    params[#params + 1] = obj("name", name, "in", "path", "required", true,
                              "schema", obj("type", "string"))
  end
  if route.query then
    for _, name in ipairs(sorted_names(route.query.fields)) do
      local f = route.query.fields[name]
      params[#params + 1] = obj("name", name, "in", "query", "required", f.required == true,
                                "schema", field_schema(name, f))
    end
  end
  local responses = obj()
  local success = {}
  for _, status in ipairs(route.responses or {}) do
    if status < 300 then success[#success + 1] = status end
  end
  if #success == 0 then success[1] = 200 end
  -- A route that answers something other than the envelope says so with `returns` (a schema of
  -- its success body, in validate.lua's language): /login's bare token object.
  local body = route.returns and object_schema(route.returns) or ref("schemas", "Envelope")
  for _, status in ipairs(success) do
    put(responses, tostring(status), obj(
      "description", REASONS[status] or "Success",
      "content", status ~= 204 and obj("application/json", obj("schema", body)) or nil))
  end
  for _, status in ipairs(M.error_statuses(route, policy, #param_names)) do
    put(responses, tostring(status), ref("responses", tostring(status)))
  end
  local summary, description = summary_of(route)
  local tag = tag_of(route)
  return obj(
    "tags", tag and array({ tag }) or nil,
    "summary", summary,
    "description", description,
    "operationId", operation_id(route.name, used_ids),
    "parameters", #params > 0 and array(params) or nil,
    "requestBody", request_body(route),
    "responses", responses,
    "security", policy and policy.authenticated and array({ obj("bearerAuth", array({})) }) or nil,
    "x-luahost-policy", policy_name)
end

-- openapi.document(gen, info) -> the OpenAPI 3.1 document (a table) of generation gen (the
-- loader's table: routes and policies). info: { title=, version=, description= }.
function M.document(gen, info)
  info = info or {}
  local paths, items, used_ids, tags, tag_seen = obj(), {}, {}, {}, {}
  local response_statuses = {}
  for _, route in ipairs(gen.routes) do
    local segs = split_path(route.path)
    local key = path_key(segs)
    local item = items[key]
    if not item then
      local names = {}
      for _, s in ipairs(segs) do
        if s.param then names[#names + 1] = s.param end
      end
      item = { path = route.path, names = names, ops = obj() }
      items[key] = item
      put(paths, route.path, item.ops)
    end
    local policy_name = route.policy or "public"
    local policy = gen.policies and gen.policies[policy_name]
    local method = route.method:lower()
    if item.ops[method] == nil then
      local op = operation(route, policy_name, policy, item.names, used_ids)
      put(item.ops, method, op)
      for status in pairs(op.responses) do
        if tonumber(status) >= 400 then response_statuses[tonumber(status)] = true end
      end
      local tag = op.tags and op.tags[1]
      if tag and not tag_seen[tag] then
        tag_seen[tag] = true
        tags[#tags + 1] = obj("name", tag)
      end
    end
  end
  local comps = components()
  local list = {}
  for status in pairs(response_statuses) do list[#list + 1] = status end
  sort(list)
  local responses = obj()
  for _, status in ipairs(list) do put(responses, tostring(status), error_response(status)) end
  put(comps, "responses", responses)
  return obj(
    "openapi", "3.1.0",
    "info", obj("title", info.title or "luahost",
                "version", info.version or "0",
                "description", info.description),
    "tags", #tags > 0 and array(tags) or nil,
    "paths", paths,
    "components", comps)
end

-- openapi.build(gen, info) -> the document as JSON text.
function M.build(gen, info)
  return M.encode(M.document(gen, info))
end

return M
