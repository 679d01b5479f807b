-- lib/settings.lua: the user service's settings, with their defaults written once, here.
--
-- Owns: reading the application's section of the configuration (luahost.config.app: the `app`
-- table of luahost.conf, and the LUAHOST_ADMIN_* and login-limit variables the host maps into it)
-- and filling in what is absent. The host knows none of these names.
--
--   settings.get(name) -> the configured value, or the default below

local core = require "luahost"

local M = {}

M.DEFAULTS = {
  users_collection = "users",
  admin_username = "",
  admin_password = "",
  admin_userage = 0,
  login_max_per_pair = 5,
  login_max_per_user = 20,
  login_max_per_addr = 100,
  login_window_s = 900,
}

function M.get(name)
  local default = M.DEFAULTS[name]
  if default == nil then error("settings: unknown setting '" .. tostring(name) .. "'", 2) end
  local cfg = core.config
  local app = cfg and cfg.app
  local v = app and app[name]
  if v == nil then return default end
  return v
end

return M
