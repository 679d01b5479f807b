-- Specs for policy tests: the shipped scripts' own tests (scripts/policies/rbac_tests.lua, and any
-- other module's `tests`) run through the one runner, luahost.policy_tests, over the shipped tree
-- as the real loader (host/lua/loader.lua) builds it, with the real runtime (host/lua/runtime.lua)
-- and the real C router (build/lua/luahost/router.so); then the runner's own refusals and
-- reports, on small trees. Host modules that need the C host (mongo, password, jwt, ratelimit, and
-- any without a build for specs) are inert doubles: loading the scripts calls none of them, and
-- policies are pure.
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/policy_tests_spec.lua
package.path = "tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"

-- The real C modules, past any double another spec of this run installed.
for _, name in ipairs({ "luahost.json", "luahost.errors", "luahost.pattern", "luahost.router" }) do
  package.loaded[name], package.preload[name] = nil, nil
end
local json = require "luahost.json"
local router = require "luahost.router"

-- A module whose every function raises: scripts may take references at load time, never call.
local function inert(name)
  return setmetatable({}, { __index = function(_, k)
    return function() error(name .. "." .. tostring(k) .. ": not available in specs", 2) end
  end })
end
local quiet = { debug = function() end, info = function() end, warn = function() end,
                error = function() end }
support.provide("luahost", setmetatable({ config = { app = {} }, form_decode = json.form_decode },
                                        { __index = inert("luahost") }))
support.provide("luahost.log", quiet)
-- Scripts declare their counters at load (lib/throttle.lua): a counter that counts nothing.
support.provide("luahost.metrics", { counter = function() return { inc = function() end } end })
for _, name in ipairs({ "luahost.mongo", "luahost.password", "luahost.jwt", "luahost.ratelimit" }) do
  support.provide(name, inert(name))
end
for _, name in ipairs({ "validate", "response", "loader", "runtime", "policy_tests" }) do
  support.load_file("luahost." .. name, "host/lua/" .. name .. ".lua")
end
local loader = require "luahost.loader"
local policy_tests = require "luahost.policy_tests"

-- What scripts may require: every luahost module but the host's internal ones (the registry in
-- lua-bindings/register.c decides in the host). A module with a real build for specs
-- (build/lua/luahost/*.so, such as luahost.unicode) is the real one; any other is inert.
local INTERNAL = { ["luahost.errors"] = true, ["luahost.pattern"] = true, ["luahost.loader"] = true,
                   ["luahost.runtime"] = true, ["luahost.policy_tests"] = true,
                   ["luahost.router"] = true }
local SCRIPT_MODULES = setmetatable({}, { __index = function(_, name)
  return (name == "luahost" or name:match("^luahost%.")) and not INTERNAL[name] or nil
end })
local function host_require(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  return inert(name)
end

-- Every .lua file under dir, as the C side reads them (host/script_set.c): path -> source.
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
  table.sort(order)
  return files, order
end

local function load_gen(files, order, label)
  return loader.load(files, order, label or "scripts", host_require, SCRIPT_MODULES)
end

-- The generation's router, built by the C router from its routes (as host/vm.c does).
local function match_of(gen)
  local r = router.new()
  for i, route in ipairs(gen.routes) do assert(r:add(route.method, route.path, i)) end
  return function(method, path) return r:match(method, path) end
end

-- The runner, in a coroutine of its own as the host runs it.
local function run(gen)
  return coroutine.wrap(function() return policy_tests.run(gen, match_of(gen)) end)()
end

describe("the shipped scripts' policy tests", function()
  local files, order = read_tree("scripts")
  local gen = load_gen(files, order)

  it("cover every policy a route names, with an allow and a deny", function()
    local seen = {}
    for _, t in ipairs(gen.tests) do
      seen[t.policy] = seen[t.policy] or {}
      seen[t.policy][t.expect] = true
    end
    for _, route in ipairs(gen.routes) do
      local p = route.policy or "public"
      assert.is_truthy(seen[p], "no policy test for " .. p)
      if gen.policies[p].authenticated then
        assert.is_true(seen[p].allow and seen[p].deny, p)
      end
    end
  end)

  it("cover admin, user and anonymous callers, and the role rule", function()
    local roles = {}
    local role_change = {}
    for _, t in ipairs(gen.tests) do
      roles[t.user and t.user.role or "anonymous"] = true
      local body = t.request.body
      if type(body) == "table" and body.role then role_change[t.user.role .. ":" .. t.expect] = true end
    end
    assert.same({ admin = true, user = true, anonymous = true }, roles)
    assert.is_true(role_change["user:deny"])
    assert.is_true(role_change["admin:allow"])
  end)

  it("all pass through the runner", function()
    local ok, text = run(gen)
    assert.is_true(ok, text)
    assert.equal(#gen.routes .. " routes, 4 policies, " .. #gen.tests .. " policy tests passed",
                 text)
  end)

  it("fail when a rule changes: a user allowed to change its role", function()
    local changed = load_gen(files, order)
    changed.policies.admin_or_self_update.allow = function() return true end
    local ok, text = run(changed)
    assert.is_false(ok)
    assert.matches("scripts/policies/rbac_tests.lua:%d+: policy test 'user may not change its " ..
                   "own role' %(admin_or_self_update, PUT /users/65a1b2c3d4e5f60718293a4c%): " ..
                   "expected deny, got allow", text)
  end)
end)

describe("luahost.policy_tests", function()
  local ROUTES = [[
local function h() return 200, {} end
return { routes = {
  { method = "GET", path = "/items/{id}", policy = "owner", handler = h },
  { method = "GET", path = "/open", handler = h },
} }
]]
  local POLICIES = [[
return {
  authenticate = function() return nil, "nobody" end,
  policies = { owner = { authenticated = true,
                         allow = function(user, req) return user.id == req.params.id end } },
}
]]
  local function tree(tests)
    return { ["routes/items.lua"] = ROUTES, ["app.lua"] = POLICIES, ["tests.lua"] = tests },
           { "app.lua", "routes/items.lua", "tests.lua" }
  end
  local function load_error(tests)
    local ok, err = pcall(load_gen, tree(tests))
    assert.is_false(ok)
    return err
  end
  local function outcome(tests)
    return run(load_gen(tree(tests)))
  end

  it("routes the request: params come from the path, percent-decoded", function()
    local ok, text = outcome([[return { tests = {
      { name = "own", policy = "owner", user = { id = "a b" },
        request = { method = "GET", path = "/items/a%20b" }, expect = "allow" },
      { name = "other", policy = "owner", user = { id = "a" },
        request = { method = "GET", path = "/items/b" }, expect = "deny" },
      { name = "anyone", policy = "public", request = { method = "GET", path = "/open" },
        expect = "allow" },
    } }]])
    assert.is_true(ok, text)
    assert.equal("2 routes, 1 policies, 3 policy tests passed", text)
  end)

  it("reports a failing test by name, with what it got", function()
    local ok, text = outcome([[return { tests = {
      { name = "stranger", policy = "owner", user = { id = "x" },
        request = { method = "GET", path = "/items/y" }, expect = "allow" },
      { name = "anonymous", policy = "owner", request = { method = "GET", path = "/items/y" },
        expect = "allow" },
    } }]])
    assert.is_false(ok)
    assert.equal("scripts/tests.lua:2: policy test 'stranger' (owner, GET /items/y): expected " ..
                 "allow, got deny (403 forbidden)\n" ..
                 "scripts/tests.lua:4: policy test 'anonymous' (owner, GET /items/y): expected " ..
                 "allow, got deny (401 not_authenticated)\n2 of 2 policy tests failed", text)
  end)

  it("reports a request no route matches, and a route whose policy is another", function()
    local ok, text = outcome([[return { tests = {
      { name = "nowhere", policy = "owner", request = { method = "GET", path = "/nope" },
        expect = "deny" },
      { name = "wrong method", policy = "owner", request = { method = "PUT", path = "/items/1" },
        expect = "deny" },
      { name = "other policy", policy = "owner", request = { method = "GET", path = "/open" },
        expect = "deny" },
    } }]])
    assert.is_false(ok)
    assert.matches("scripts/tests.lua:2: policy test 'nowhere' %(owner, GET /nope%): the " ..
                   "request matches no route %(no route has this path%)", text)
    assert.matches("'wrong method' %(owner, PUT /items/1%): the request matches no route %(the " ..
                   "path exists, not for PUT%)", text)
    assert.matches("'other policy' %(owner, GET /open%): the request is served by route " ..
                   "'GET /open' %(scripts/routes/items.lua:1%), whose policy is 'public', " ..
                   "not 'owner'", text)
  end)

  it("counts an error raised by a policy as a failure, naming it", function()
    local trees = { tree([[return { tests = {
      { name = "boom", policy = "owner", user = {},
        request = { method = "GET", path = "/items/1" }, expect = "deny" } } }]]) }
    trees[1]["app.lua"] = POLICIES:gsub("return user.id == req.params.id",
                                        "error('policy broke')")
    local ok, text = run(load_gen(trees[1], select(2, tree(""))))
    assert.is_false(ok)
    assert.matches("'boom' %(owner, GET /items/1%): expected deny, got an error: .*policy broke",
                   text)
  end)

  it("refuses a malformed test in the loader, with file and line", function()
    local cases = {
      { [[return { tests = { { name = "a", policy = "owner", expect = "allow", request = {
           method = "GET", path = "/open" }, users = {} } } }]],
        "scripts/tests.lua:1: policy test 'a': unknown key 'users'" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "yes",
             request = { method = "GET", path = "/open" } } } }]],
        "scripts/tests.lua:2: policy test 'a': 'expect' must be \"allow\" or \"deny\"" },
      { [[return { tests = {
           { name = "a", policy = "ownr", expect = "deny",
             request = { method = "GET", path = "/open" } } } }]],
        "scripts/tests.lua:2: policy test 'a': unknown policy 'ownr'" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "deny",
             request = { method = "GET", path = "/open", bdy = {} } } } }]],
        "scripts/tests.lua:2: policy test 'a': request: unknown key 'bdy'" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "deny",
             request = { method = "get", path = "/open" } } } }]],
        "request: 'method' must be an HTTP method in capitals" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "deny",
             request = { method = "GET", path = "/open?x=1" } } } }]],
        "request: 'path' has a query string: put it in 'query'" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "deny", user = "admin",
             request = { method = "GET", path = "/open" } } } }]],
        "'user' must be a principal table, or nil for an anonymous caller" },
      { [[return { tests = {
           { name = "a", policy = "owner", expect = "deny", request = { method = "GET", path = "/open" } },
           { name = "a", policy = "owner", expect = "deny", request = { method = "GET", path = "/open" } },
         } }]],
        "policy test 'a': a test of this name is already defined at scripts/tests.lua:2" },
      { [[return {
           tests = { name = "a" } }]], "scripts/tests.lua:2: 'tests' must be a list of policy tests" },
      { [[return { tests = { 42 } }]], "scripts/tests.lua:1: policy test #1: must be a table" },
    }
    for _, case in ipairs(cases) do
      local err = load_error(case[1])
      assert.is_truthy(err:find(case[2], 1, true), err)
    end
  end)
end)
