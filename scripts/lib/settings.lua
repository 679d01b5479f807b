-- lib/settings.lua: the user service's settings, with their defaults and ranges written once, here.
--
-- Owns: reading the application's section of the configuration (luahost.config.app: the `app`
-- table of luahost.conf, and the LUAHOST_ADMIN_* and login-limit variables the host maps into it),
-- checking each value, and filling in what is absent. The host knows none of these names: it only
-- checks that the section is data.
--
--   settings.get(name) -> the configured value, or the default below
--   settings.check()   -> raises, naming the setting and its variable, on the first bad value;
--                         app.lua calls it when the scripts load, so a bad value stops the start
--                         (and `luahost --check`) instead of surfacing at the first login.

local core = require "luahost"

local M = {}

-- name -> { default, "integer", min, max } (inclusive) or { default, "string", allowed set or nil }
local SPEC = {
  users_collection = { "users", "string" },
  admin_username = { "", "string" },
  admin_password = { "", "string" },
  admin_userage = { 0, "integer", 0, 150 },
  login_max_per_pair = { 5, "integer", 1, 1000000 },
  login_max_per_user = { 20, "integer", 1, 1000000 },
  login_max_per_addr = { 100, "integer", 1, 1000000 },
  login_window_s = { 900, "integer", 1, 86400 },
  throttle_store = { "mongodb", "string", { mongodb = true, memory = true } },
}

M.DEFAULTS = {}
for name, spec in pairs(SPEC) do M.DEFAULTS[name] = spec[1] end

-- The configured value. A variable (LUAHOST_LOGIN_WINDOW_S=60) reaches the section as a string
-- unless the file gave the key a number: an integer setting reads such text as its number.
local function configured(name)
  local cfg = core.config
  local app = cfg and cfg.app
  local v = app and app[name]
  if type(v) == "string" and SPEC[name][2] == "integer" and v:match("^%-?%d+$") then
    return tonumber(v)
  end
  return v
end

-- nil when v suits spec, else what it must be.
local function problem(spec, v)
  local kind, min, max = spec[2], spec[3], spec[4]
  if kind == "string" then
    if type(v) ~= "string" then return "must be a string" end
    if min and not min[v] then
      local names = {}
      for name in pairs(min) do names[#names + 1] = name end
      table.sort(names)
      return "must be one of " .. table.concat(names, ", ")
    end
    return nil
  end
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
    return ("must be an integer from %d to %d"):format(min, max)
  end
  return nil
end

function M.get(name)
  local spec = SPEC[name]
  if spec == nil then error("settings: unknown setting '" .. tostring(name) .. "'", 2) end
  local v = configured(name)
  if v == nil then return spec[1] end
  return v
end

function M.check()
  local names = {}
  for name in pairs(SPEC) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = configured(name)
    local why = v ~= nil and problem(SPEC[name], v)
    if why then
      error(("app.%s (LUAHOST_%s): %s, got %s"):format(name, name:upper(), why, tostring(v)), 0)
    end
  end
end

return M
