-- Specs for luahost.openapi (host/lua/openapi.lua): the API description of a generation, first on
-- the shipped scripts as the real loader (host/lua/loader.lua) builds them, then on small
-- generations for each rule (error statuses, equivalent paths, operation ids, key order), and the
-- loader's check of the `responses` key. The JSON is the real C encoder's and decoder's
-- (build/lua/luahost/json.so). (tests/integration/test_openapi.py validates the served document
-- against the OpenAPI 3.1 schema.)
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/openapi_spec.lua
package.path = "tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

-- The real C modules, past any double another spec of this run installed.
for _, name in ipairs({ "luahost.json", "luahost.errors", "luahost.pattern" }) do
  package.loaded[name], package.preload[name] = nil, nil
end
local json = require "luahost.json"

local function inert(name)
  return setmetatable({}, { __index = function(_, k)
    return function() error(name .. "." .. tostring(k) .. ": not available in specs", 2) end
  end })
end
support.provide("luahost", setmetatable({ config = { app = {} }, form_decode = json.form_decode },
                                        { __index = inert("luahost") }))
support.provide("luahost.log", { debug = function() end, info = function() end,
                                 warn = function() end, error = function() end })
for _, name in ipairs({ "luahost.mongo", "luahost.password", "luahost.jwt", "luahost.ratelimit" }) do
  support.provide(name, inert(name))
end
-- Declared by scripts at load (lib/throttle.lua's counter); the admin routes' module.
support.provide("luahost.metrics", { counter = function() return { inc = function() end } end })
support.provide("luahost.admin", inert("luahost.admin"))
for _, name in ipairs({ "validate", "response", "loader", "runtime", "policy_tests", "openapi" }) do
  support.load_file("luahost." .. name, "host/lua/" .. name .. ".lua")
end
local loader = require "luahost.loader"
local openapi = require "luahost.openapi"

local SCRIPT_MODULES = setmetatable({}, { __index = function(_, name)
  return (name == "luahost" or name:match("^luahost%.")) and name ~= "luahost.loader" or nil
end })
local function host_require(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  return inert(name)
end

local function read_tree(dir)
  local files, order = {}, {}
  local p = assert(io.popen("cd '" .. dir .. "' && find . -name '*.lua' -type f | sort"))
  for line in p:lines() do
    local path = line:gsub("^%./", "")
    local f = assert(io.open(dir .. "/" .. path, "rb"))
    files[path] = f:read("*a")
    f:close()
    order[#order + 1] = path
  end
  p:close()
  return files, order
end

local function load_sources(sources)
  local files, order = {}, {}
  for path, src in pairs(sources) do
    files[path] = src
    order[#order + 1] = path
  end
  table.sort(order)
  return loader.load(files, order, "t", host_require, SCRIPT_MODULES)
end

-- The document as a client reads it: encoded, then decoded.
local function doc_of(gen)
  local text = openapi.build(gen, { title = "t", version = "g1" })
  local doc = assert(json.decode(text))
  return doc, text
end

local function statuses(op)
  local list = {}
  for status in pairs(op.responses) do list[#list + 1] = tonumber(status) end
  table.sort(list)
  return table.concat(list, ",")
end

describe("luahost.openapi on the shipped scripts", function()
  local files, order = read_tree("scripts")
  local gen = loader.load(files, order, "scripts", host_require, SCRIPT_MODULES)
  local doc, text = doc_of(gen)

  it("is an OpenAPI 3.1 document with every route as an operation", function()
    assert.equal("3.1.0", doc.openapi)
    assert.equal("g1", doc.info.version)
    local n = 0
    for _, route in ipairs(gen.routes) do
      local op = doc.paths[route.path] and doc.paths[route.path][route.method:lower()]
      assert.is_truthy(op, route.method .. " " .. route.path)
      assert.equal(route.policy or "public", op["x-luahost-policy"])
      n = n + 1
    end
    assert.equal(9, n) -- the seven user routes, GET and POST /admin/reload (admin_policy)
  end)

  it("asks for a bearer token exactly where the policy needs a user", function()
    for _, route in ipairs(gen.routes) do
      local op = doc.paths[route.path][route.method:lower()]
      local needs = gen.policies[route.policy or "public"].authenticated
      if needs then
        assert.equal("bearerAuth", next(op.security[1]))
        assert.is_truthy(op.responses["401"])
      else
        assert.is_nil(op.security)
      end
    end
    local scheme = doc.components.securitySchemes.bearerAuth
    assert.same({ "http", "bearer", "JWT" }, { scheme.type, scheme.scheme, scheme.bearerFormat })
  end)

  it("lists each route's error statuses from its declaration and its `responses`", function()
    assert.equal("200,401,413,415,422,429,503", statuses(doc.paths["/login"].post))
    assert.equal("200,401,503", statuses(doc.paths["/logout"].post))
    assert.equal("201,401,403,409,413,415,422,503", statuses(doc.paths["/users/create"].post))
    assert.equal("200,401,403,422,503", statuses(doc.paths["/users/"].get))
    assert.equal("200,401,403,404,503", statuses(doc.paths["/users/{user_id}"].get))
    assert.equal("200,401,403,404,409,413,415,422,503",
                 statuses(doc.paths["/users/{user_id}"].put))
    assert.equal("200,401,403,404,409,503", statuses(doc.paths["/users/{user_id}"].delete))
    assert.equal("#/components/responses/422",
                 doc.paths["/users/create"].post.responses["422"]["$ref"])
    local r422 = doc.components.responses["422"].content["application/json"].schema
    assert.equal("#/components/schemas/ValidationErrorEnvelope", r422["$ref"])
    assert.is_truthy(doc.components.responses["429"].headers["Retry-After"])
    assert.is_truthy(doc.components.responses["401"].headers["WWW-Authenticate"])
  end)

  it("describes the list query with types, bounds, enums and defaults", function()
    local by = {}
    for _, p in ipairs(doc.paths["/users/"].get.parameters) do by[p.name] = p end
    assert.equal("query", by.limit["in"])
    assert.same({ "integer", 1, 100, 10 },
                { by.limit.schema.type, by.limit.schema.minimum, by.limit.schema.maximum,
                  by.limit.schema.default })
    assert.same({ "username", "userage", "created_at" }, by.sort_by.schema.enum)
    assert.equal("username", by.sort_by.schema.default)
    assert.same({ "asc", "desc" }, by.sort_order.schema.enum)
    assert.equal(64, by.username.schema.maxLength)
    assert.is_false(by.username.required)
  end)

  it("describes path parameters and the JSON bodies", function()
    local get = doc.paths["/users/{user_id}"].get
    assert.same({ name = "user_id", ["in"] = "path", required = true,
                  schema = { type = "string" } }, get.parameters[1])
    local body = doc.paths["/users/create"].post.requestBody
    assert.is_true(body.required)
    local schema = body.content["application/json"].schema
    assert.same({ "password", "userage", "username" }, schema.required)
    assert.is_false(schema.additionalProperties)
    assert.same({ 0, 150 }, { schema.properties.userage.minimum, schema.properties.userage.maximum })
    assert.same({ 8, 128 },
                { schema.properties.password.minLength, schema.properties.password.maxLength })
    assert.same({ "user", "admin" }, schema.properties.role.enum)
    assert.equal("user", schema.properties.role.default)
    assert.is_nil(body.content["application/x-www-form-urlencoded"])
  end)

  it("gives /login its form body first, as the route declares it", function()
    local content = doc.paths["/login"].post.requestBody.content
    local form = content["application/x-www-form-urlencoded"].schema
    assert.same({ "password", "username" }, form.required)
    assert.equal("password", form.properties.password.format)
    local login = text:find('"/login"', 1, true)
    local form_at = text:find("application/x-www-form-urlencoded", login, true)
    local json_at = text:find('"application/json"', login, true)
    assert.is_true(form_at < json_at)
  end)

  it("names operations from the route's name and sums them up from its description", function()
    local op = doc.paths["/users/create"].post
    assert.equal("users.create", op.operationId)
    assert.equal("Create a user (admins)", op.summary)
    assert.same({ "users" }, op.tags)
    local login = doc.paths["/login"].post
    assert.equal("Log in with a username and password", login.summary)
    assert.matches("^Form fields username and password", login.description)
  end)

  it("keeps the paths in declaration order", function()
    local last = 0
    for _, route in ipairs(gen.routes) do
      local at = text:find('"' .. route.path .. '":{', 1, true)
      assert.is_truthy(at, route.path)
      if at < last then error(route.path .. " is out of order") end
      last = at
    end
  end)
end)

describe("luahost.openapi rules", function()
  local function route(t)
    t.accepts = t.accepts or {}
    t.responses = t.responses or {}
    t.name = t.name or (t.method .. " " .. t.path)
    return t
  end
  local policies = {
    public = { authenticated = false },
    open_rule = { authenticated = false, allow = function() return true end },
    user = { authenticated = true },
  }

  it("derives error statuses: 401 for a user, 403 for a rule, 404 for parameters, 503 always",
     function()
    local function list(r, policy)
      return table.concat(openapi.error_statuses(r, policies[policy], select(2, r.path:gsub("{", ""))), ",")
    end
    assert.equal("503", list(route({ method = "GET", path = "/a" }), "public"))
    assert.equal("403,503", list(route({ method = "GET", path = "/a" }), "open_rule"))
    assert.equal("401,404,503", list(route({ method = "GET", path = "/a/{id}" }), "user"))
    assert.equal("413,415,422,503",
                 list(route({ method = "POST", path = "/a", body = { fields = {} } }), "public"))
    assert.equal("422,503", list(route({ method = "GET", path = "/a", query = { fields = {} } }),
                                 "public"))
    assert.equal("409,429,503",
                 list(route({ method = "GET", path = "/a", responses = { 201, 409, 429 } }),
                      "public"))
  end)

  it("makes equivalent paths one path item, with the first declaration's names", function()
    local doc = doc_of({ policies = policies, routes = {
      route({ method = "GET", path = "/items/{id}" }),
      route({ method = "DELETE", path = "/items/{item_id}/" }),
    } })
    assert.is_nil(doc.paths["/items/{item_id}/"])
    assert.equal("id", doc.paths["/items/{id}"].delete.parameters[1].name)
    assert.equal("id", doc.paths["/items/{id}"].get.parameters[1].name)
  end)

  it("makes operation ids from names, unique and without spaces or slashes", function()
    local doc = doc_of({ policies = policies, routes = {
      route({ method = "GET", path = "/a/{x}", name = "GET /a/{x}" }),
      route({ method = "GET", path = "/b", name = "same" }),
      route({ method = "GET", path = "/c", name = "same" }),
    } })
    assert.equal("GET_a_x", doc.paths["/a/{x}"].get.operationId)
    assert.equal("same", doc.paths["/b"].get.operationId)
    assert.equal("same_2", doc.paths["/c"].get.operationId)
    assert.equal("GET /a/{x}", doc.paths["/a/{x}"].get.summary)
  end)

  it("answers 2xx statuses a route lists instead of 200, and 204 without content", function()
    local doc = doc_of({ policies = policies, routes = {
      route({ method = "DELETE", path = "/a", responses = { 204 } }),
    } })
    local op = doc.paths["/a"].delete
    assert.is_nil(op.responses["200"])
    assert.equal("No Content", op.responses["204"].description)
    assert.is_nil(op.responses["204"].content)
  end)

  it("carries a Lua pattern as x-lua-pattern, never as a regular expression", function()
    local doc = doc_of({ policies = policies, routes = {
      route({ method = "GET", path = "/a", query = { fields = {
        code = { type = "string", pattern = "%d+", required = true },
      } } }),
    } })
    local p = doc.paths["/a"].get.parameters[1]
    assert.is_true(p.required)
    assert.is_nil(p.schema.pattern)
    assert.equal("%d+", p.schema["x-lua-pattern"])
  end)

  it("encodes empty lists as [] and keeps the order of its own objects", function()
    assert.equal('{"security":[{"bearerAuth":[]}]}',
                 openapi.encode({ security = json.array({ { bearerAuth = json.array({}) } }) }))
    local doc = openapi.document({ policies = policies, routes = {} }, { version = "x" })
    local text = openapi.encode(doc)
    assert.matches('^{"openapi":"3.1.0","info":', text)
    assert.equal("{}", text:match('"paths":(%b{})'))
  end)
end)

describe("the loader's `responses` key", function()
  local function load_route(fields)
    return pcall(load_sources, { ["routes/a.lua"] =
      "return { routes = { { method = 'GET', path = '/a', handler = function() end, " ..
      fields .. " } } }" })
  end

  it("takes a list of HTTP statuses and keeps it sorted, with the description", function()
    local ok, gen = load_route("responses = { 429, 201, 409 }, description = 'd'")
    assert.is_true(ok, gen)
    assert.same({ 201, 409, 429 }, gen.routes[1].responses)
    assert.equal("d", gen.routes[1].description)
  end)

  it("refuses anything else, naming the key", function()
    for _, bad in ipairs({ "responses = 409", "responses = { 'x' }", "responses = { 99 }",
                           "responses = { 600 }", "responses = { 409.5 }",
                           "responses = { a = 409 }", "description = 1" }) do
      local ok, err = load_route(bad)
      assert.is_false(ok, bad)
      assert.matches(bad:match("^(%a+)"), err, 1, true)
    end
  end)
end)

describe("luahost.openapi text", function()
  it("refuses a declaration that is not valid UTF-8 (the host then serves a minimal document)",
     function()
    local ok, err = pcall(openapi.build, { policies = { public = {} }, routes = { {
      method = "GET", path = "/a", name = "a", description = "caf\233", accepts = {},
      responses = {} } } }, { version = "x" })
    assert.is_false(ok)
    assert.matches("not valid UTF-8", err, 1, true)
  end)
end)
