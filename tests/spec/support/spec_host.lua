-- tests/spec/support/spec_host.lua: what specs of host and script Lua modules share: a test double of
-- the C module luahost.json (a unique null sentinel and one array metatable), and loaders that
-- make `require` return a double or the real file, even when another spec of the same busted run
-- installed something else under that name.
local M = {}

M.ARRAY_MT = { __jsontype = "array" }

-- The real C module (build/lua/luahost/json.so), loaded past any double a spec installed: the
-- double lends its UTF-8 validator and safe-integer bound, which have one owner in C.
local function real_json()
  local loaded, preload = package.loaded["luahost.json"], package.preload["luahost.json"]
  package.loaded["luahost.json"], package.preload["luahost.json"] = nil, nil
  local ok, mod = pcall(require, "luahost.json")
  package.loaded["luahost.json"], package.preload["luahost.json"] = loaded, preload
  assert(ok, "spec_host: the C module luahost.json is not built (set LUA_CPATH): " .. tostring(mod))
  return mod
end
local C = real_json()

M.json = {
  null = setmetatable({}, { __tostring = function() return "json.null" end }),
  array = function(t) return setmetatable(t or {}, M.ARRAY_MT) end,
  utf8_valid = C.utf8_valid,
  utf8_len = C.utf8_len,
  max_safe_integer = C.max_safe_integer,
}

function M.is_array(t)
  return getmetatable(t) == M.ARRAY_MT
end

-- provide(name, mod): `require(name)` returns mod.
function M.provide(name, mod)
  package.loaded[name] = nil
  package.preload[name] = function() return mod end
end

-- load_file(name, path): `require(name)` runs the real file at path (fresh for this spec).
function M.load_file(name, path)
  package.loaded[name] = nil
  package.preload[name] = function() return dofile(path) end
end

return M
