-- luahost.loader: builds one generation from the script sources, off the request path.
--
-- The C side reads every .lua file under the scripts directory once and passes the contents here,
-- so a generation is exactly the bytes that were read (what an operator's editor half-wrote later
-- cannot leak in). Every file is loaded as a module of a sandbox: its name is its path with dots
-- ("routes/users.lua" is "routes.users"), `require` resolves script modules inside the same set of
-- files and host modules by their `luahost.*` names, and nothing else is reachable.
--
-- A module contributes to the generation by returning a table with any of:
--   routes = { {method=..., path=..., handler=..., policy=..., query=..., body=..., accepts=...,
--                name=..., description=..., responses={409, 429}}, ... }
-- (`name` and `description` become the operation's id and summary in /openapi.json, and
-- `responses` lists the statuses the handler itself answers beyond the ones the host derives from
-- the declaration, say 201 for a success other than 200, or 409: luahost.openapi)
--   policies = { name = function(user, req) ... end | { authenticated = bool, allow = function } }
-- and the application's hooks, each defined by one module only (by convention scripts/app.lua):
--   authenticate = function(req) -> user | nil, code, message
--   on_start = function() -> true | nil, err   (run once per process after start; may yield)
--   commands = { name = function(args) -> result_table | nil, err }   (`luahost NAME`)
--   admin_policy = "<policy name>"   (the host then adds GET and POST /admin/reload to the public
--     listener, guarded by that policy: the live-reload status and a reload, luahost.admin)
-- and, from any module, `tests`: policy tests (luahost.policy_tests checks their shape here and
-- runs them against the finished generation).
-- Handlers, policies and authenticate share one convention (luahost.runtime: the value, or nil,
-- code, message). Any other module is a helper that other scripts require.
local validate = require "luahost.validate"
local policy_tests = require "luahost.policy_tests"

local M = {}

local ROUTE_KEYS = { method = true, path = true, handler = true, policy = true, query = true,
                     body = true, accepts = true, name = true, description = true,
                     responses = true, returns = true }
local ACCEPT_KINDS = { json = true, form = true }

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
  end
  return c
end

-- The coroutines the host runs requests and hooks in (weak keys: they go when they finish).
-- Scripts may create and resume coroutines of their own, never one of these: resuming another
-- request's suspended coroutine would run it outside the scheduler.
M.tasks = setmetatable({}, { __mode = "k" })

-- A read-only view of t: reads go to t, writes raise. Scripts get these for the libraries and the
-- host modules, so one script cannot change what another script or the host itself calls.
local views = setmetatable({}, { __mode = "k" })

local function readonly(t, name)
  local view = setmetatable({}, {
    __index = t,
    __newindex = function(_, k)
      error("'" .. name .. "' is read-only: cannot set '" .. tostring(k) .. "'", 2)
    end,
    __metatable = false,
  })
  views[view] = true
  return view
end

local function where_of(fn)
  local info = debug.getinfo(fn, "S")
  local src = info.source or "?"
  if src:sub(1, 1) == "@" then src = src:sub(2) end
  return src .. ":" .. tostring(info.linedefined or "?")
end

local function finish_xpcall(handler, ok, ...)
  if ok then return true, ... end
  -- An error in the handler is the result, as with xpcall (LuaJIT: "error in error handling").
  return false, select(2, pcall(handler, (...)))
end

-- The sandbox: allow-listed globals, copies of the libraries so scripts cannot change what the
-- host itself uses, no bytecode, no file or process access, and a read-only global table whose
-- unknown names are errors (a typo fails loudly instead of reading nil).
local function make_env(host_require, host_modules, script_require, label)
  local co = copy(coroutine)
  local resume = coroutine.resume
  co.resume = function(c, ...)
    if M.tasks[c] then error("cannot resume a coroutine that the host runs", 2) end
    return resume(c, ...)
  end
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
    select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawequal = rawequal, rawget = rawget,
    setmetatable = setmetatable,
    string = readonly(copy(string, { dump = true }), "string"),
    table = readonly(copy(table), "table"),
    math = readonly(copy(math), "math"),
    bit = readonly(copy(bit), "bit"),
    os = readonly({ time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }, "os"),
    coroutine = readonly(co, "coroutine"),
  }
  -- LuaJIT runs a message handler with hooks off, where the time budget cannot stop it: the
  -- sandbox's xpcall unwinds with pcall first and then calls the handler as ordinary code. The
  -- handler sees the error value, not the failed frame (scripts have no debug library anyway).
  env.xpcall = function(f, handler, ...)
    return finish_xpcall(handler, pcall(f, ...))
  end
  -- rawset would write through a read-only view into the table every script shares.
  env.rawset = function(t, k, v)
    if views[t] then error("rawset: this table is read-only", 2) end
    return rawset(t, k, v)
  end
  -- getmetatable("") would hand out the shared string metatable; refuse strings.
  env.getmetatable = function(v)
    if type(v) == "string" then return nil end
    return getmetatable(v)
  end
  local host_views = {}
  env.require = function(name)
    if type(name) ~= "string" then error("require: module name must be a string", 2) end
    if host_modules[name] then
      local view = host_views[name]
      if not view then
        view = readonly(host_require(name), name)
        host_views[name] = view
      end
      return view
    end
    if name:sub(1, 8) == "luahost." then
      error("require: '" .. name .. "' is not a module scripts may use", 2)
    end
    return script_require(name, 2)
  end
  local log = host_require("luahost.log")
  env.print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    log.info(table.concat(parts, "\t"))
  end
  -- No `_G`: a script holding its own environment could rawset globals into it.
  return setmetatable(env, {
    __index = function(_, k)
      error("undefined global '" .. tostring(k) .. "'", 2)
    end,
    __newindex = function(_, k)
      error("assignment to global '" .. tostring(k) .. "' is not allowed in " .. label ..
            " scripts: use local variables", 2)
    end,
    __metatable = false,
  })
end

local function check_route(r, i, file)
  local at = file .. ": route #" .. i
  if type(r) ~= "table" then return nil, at .. ": a route must be a table" end
  if type(r.handler) ~= "function" then return nil, at .. ": 'handler' must be a function" end
  local where = where_of(r.handler)
  at = where .. ": route #" .. i
  for k in pairs(r) do
    if not ROUTE_KEYS[k] then return nil, at .. ": unknown key '" .. tostring(k) .. "'" end
  end
  -- Which methods exist, which paths the host keeps and what a path may look like are the C
  -- router's rules (host/router.c), checked when the routes are added (host/vm.c): here only the
  -- Lua types.
  if type(r.method) ~= "string" then return nil, at .. ": 'method' must be a string" end
  if type(r.path) ~= "string" then return nil, at .. ": 'path' must be a string" end
  if r.policy ~= nil and type(r.policy) ~= "string" then
    return nil, at .. ": 'policy' must be the name of a policy"
  end
  for _, key in ipairs({ "query", "body", "returns" }) do
    if r[key] ~= nil then
      local ok, err = validate.check_schema(r[key])
      if not ok then return nil, at .. ": '" .. key .. "' schema: " .. err end
    end
  end
  if r.description ~= nil and type(r.description) ~= "string" then
    return nil, at .. ": 'description' must be a string"
  end
  local responses = {}
  if r.responses ~= nil then
    local bad = type(r.responses) ~= "table"
    if not bad then
      for k, status in pairs(r.responses) do
        if type(k) ~= "number" or k < 1 or k > #r.responses or type(status) ~= "number" or
           status ~= math.floor(status) or status < 200 or status > 599 then
          bad = true
          break
        end
        responses[#responses + 1] = status
      end
    end
    if bad then
      return nil, at .. ": 'responses' must be a list of HTTP statuses (integers 200 to 599)"
    end
    table.sort(responses)
  end
  local accepts = {}
  if r.accepts ~= nil then
    if type(r.accepts) ~= "table" then
      return nil, at .. ": 'accepts' must be a list of \"json\" and/or \"form\""
    end
    for _, kind in ipairs(r.accepts) do
      if not ACCEPT_KINDS[kind] then
        return nil, at .. ": 'accepts' must be a list of \"json\" and/or \"form\""
      end
      accepts[kind] = true
    end
  elseif r.body ~= nil or r.method == "POST" or r.method == "PUT" or r.method == "PATCH" then
    accepts.json = true
  end
  return {
    method = r.method, path = r.path, handler = r.handler, policy = r.policy,
    query = r.query, body = r.body, accepts = accepts, where = where,
    accepts_order = r.accepts, description = r.description, responses = responses,
    returns = r.returns,
    name = r.name or (r.method .. " " .. r.path),
  }
end

local function check_policy(name, p, file)
  if type(name) ~= "string" then return nil, file .. ": policy names must be strings" end
  if type(p) == "function" then return { allow = p, where = where_of(p) } end
  if type(p) ~= "table" then
    return nil, file .. ": policy '" .. name .. "' must be a function or a table"
  end
  for k in pairs(p) do
    if k ~= "authenticated" and k ~= "allow" then
      return nil, file .. ": policy '" .. name .. "': unknown key '" .. tostring(k) .. "'"
    end
  end
  if p.allow ~= nil and type(p.allow) ~= "function" then
    return nil, file .. ": policy '" .. name .. "': 'allow' must be a function"
  end
  return { authenticated = p.authenticated and true or false, allow = p.allow,
           where = p.allow and where_of(p.allow) or file }
end

-- The host's own routes on the public listener, when the scripts name the policy that guards them
-- (`admin_policy`): the path is below the host's reserved /admin/, so only these are let in there
-- (host = true; host/vm.c). Their answers are the status of GET /admin/reload on the admin
-- listener (docs/operations.md); a rejected reload answers 422 with that status as its data.
function M.add_admin_routes(gen, host_require)
  local admin = host_require("luahost.admin")
  local response = host_require("luahost.response")
  local where = gen.admin_policy_where
  gen.routes[#gen.routes + 1] = {
    method = "GET", path = "/admin/reload", policy = gen.admin_policy, accepts = {},
    where = where, host = true, name = "reload.status",
    description = "The live script generation and the recent reloads.",
    handler = function()
      local status, err = admin.status()
      if not status then return nil, err end
      return response.ok("Reload status", status)
    end,
  }
  gen.routes[#gen.routes + 1] = {
    method = "POST", path = "/admin/reload", policy = gen.admin_policy, accepts = { json = true },
    where = where, host = true, name = "reload.run", responses = { 422 },
    description = "Reloads the scripts and configuration; answers once the outcome is known.",
    handler = function()
      local ok, status = admin.reload("api")
      if ok == nil then return nil, status end
      if ok then return response.ok("Reloaded: generation " .. status.generation .. " is live",
                                    status) end
      return response.envelope(422, "Reload rejected: " .. tostring(status.last_error), status)
    end,
  }
end

-- files: path -> source; order: sorted list of paths; label: the scripts directory as shown in
-- messages; host_require: the host's require; host_modules: { [name] = true } for the modules
-- scripts may require (the C module registry decides, lua-bindings/register.c). Returns a
-- generation table or raises a message.
function M.load(files, order, label, host_require, host_modules)
  local loaded, loading = {}, {}
  local env
  local function script_require(name, level)
    local r = loaded[name]
    if r ~= nil then return r end
    local path = name:gsub("%.", "/") .. ".lua"
    local src = files[path]
    if not src then
      path = name:gsub("%.", "/") .. "/init.lua"
      src = files[path]
    end
    if not src then
      error("module '" .. name .. "' not found in " .. label, level + 1)
    end
    if loading[name] then error("circular require of '" .. name .. "'", level + 1) end
    loading[name] = true
    local fn, err = load(src, "@" .. label .. "/" .. path, "t", env)
    if not fn then error(err, 0) end
    local res = fn(name)
    loading[name] = nil
    if res == nil then res = true end
    loaded[name] = res
    return res
  end
  env = make_env(host_require, host_modules, script_require, label)

  local gen = { routes = {}, policies = {}, authenticate = nil, files = #order,
                on_start = {}, commands = {}, tests = {} }
  local test_at = {}
  gen.policies.public = { authenticated = false, where = "(built-in)" }
  local policy_file = { public = "(built-in)" }
  -- Each hook has one home: a second module defining it is refused, naming both places.
  local hook_at = {}
  local function define_hook(hook, file, fn)
    local at = where_of(fn)
    if at:sub(1, #file + 1) ~= file .. ":" then at = file .. " (the function at " .. at .. ")" end
    if hook_at[hook] then
      error(at .. ": '" .. hook .. "' is already defined at " .. hook_at[hook] ..
            " (each application hook is defined once, by convention in app.lua)", 0)
    end
    hook_at[hook] = at
  end
  for _, path in ipairs(order) do
    local name = path:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    local mod = script_require(name, 1)
    local file = label .. "/" .. path
    if type(mod) == "table" then
      if mod.routes ~= nil then
        if type(mod.routes) ~= "table" then error(file .. ": 'routes' must be a list", 0) end
        for i, r in ipairs(mod.routes) do
          local route, err = check_route(r, i, file)
          if not route then error(err, 0) end
          gen.routes[#gen.routes + 1] = route
        end
      end
      if mod.policies ~= nil then
        if type(mod.policies) ~= "table" then error(file .. ": 'policies' must be a table", 0) end
        for pname, p in pairs(mod.policies) do
          if policy_file[pname] then
            error(file .. ": policy '" .. tostring(pname) .. "' is already defined in " ..
                  policy_file[pname], 0)
          end
          local pol, err = check_policy(pname, p, file)
          if not pol then error(err, 0) end
          gen.policies[pname] = pol
          policy_file[pname] = file
        end
      end
      if mod.tests ~= nil then
        policy_tests.collect(gen.tests, mod.tests, file, files[path], test_at)
      end
      if mod.authenticate ~= nil then
        if type(mod.authenticate) ~= "function" then
          error(file .. ": 'authenticate' must be a function", 0)
        end
        define_hook("authenticate", file, mod.authenticate)
        gen.authenticate, gen.authenticate_where = mod.authenticate, where_of(mod.authenticate)
      end
      if mod.on_start ~= nil then
        if type(mod.on_start) ~= "function" then
          error(file .. ": 'on_start' must be a function", 0)
        end
        define_hook("on_start", file, mod.on_start)
        gen.on_start[1] = { fn = mod.on_start, where = file }
      end
      if mod.admin_policy ~= nil then
        if type(mod.admin_policy) ~= "string" then
          error(file .. ": 'admin_policy' must be the name of a policy", 0)
        end
        if hook_at.admin_policy then
          error(file .. ": 'admin_policy' is already defined in " .. hook_at.admin_policy, 0)
        end
        hook_at.admin_policy = file
        gen.admin_policy, gen.admin_policy_where = mod.admin_policy, file
      end
      if mod.commands ~= nil then
        if type(mod.commands) ~= "table" then error(file .. ": 'commands' must be a table", 0) end
        local first
        for cname, fn in pairs(mod.commands) do
          if type(cname) ~= "string" or not cname:match("^[%a_][%w_%-]*$") or
             type(fn) ~= "function" then
            error(file .. ": 'commands' must map names to functions", 0)
          end
          first = first or fn
        end
        if first then define_hook("commands", file, first) end
        for cname, fn in pairs(mod.commands) do gen.commands[cname] = fn end
      end
    end
  end
  if gen.admin_policy then M.add_admin_routes(gen, host_require) end
  for _, r in ipairs(gen.routes) do
    local pname = r.policy or "public"
    local pol = gen.policies[pname]
    if not pol then error(r.where .. ": unknown policy '" .. pname .. "'", 0) end
    if pol.authenticated and not gen.authenticate then
      error(r.where .. ": policy '" .. pname .. "' needs authentication, but no script " ..
            "returns an 'authenticate' function", 0)
    end
    r.policy_spec = pol
  end
  policy_tests.check_policies(gen)
  return gen
end

return M
