-- tests/spec/support/spec_host.lua: what specs of host and script Lua modules share: a test double of
-- the C module luahost.json (a unique null sentinel and one array metatable), and loaders that
-- make `require` return a double or the real file, even when another spec of the same busted run
-- installed something else under that name.
local M = {}

M.ARRAY_MT = { __jsontype = "array" }

M.json = {
  null = setmetatable({}, { __tostring = function() return "json.null" end }),
  array = function(t) return setmetatable(t or {}, M.ARRAY_MT) end,
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
