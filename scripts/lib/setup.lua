-- lib/setup.lua: what the user service needs before it can serve, and the migration command.
--
-- Owns: start-up (the unique index on username_lc, the check that every user has its name document,
-- the admin guard and the bootstrap admin) and `luahost migrate` (bringing documents of the
-- original FastAPI service, or of an older luahost, to luahost's shape: NFKC_Casefold keys,
-- skeletons, name documents, the admin guard). app.lua hands these to the host as its `on_start`
-- and `commands.migrate` hooks.
--
-- start() runs once per process after the listeners open; until it succeeds /readyz answers 503
-- and the host retries it every 5 s, so a database that is still starting is simply waited for.

local core = require "luahost"
local log = require "luahost.log"
local response = require "luahost.response"
local users = require "lib.users"
local throttle = require "lib.throttle"
local schemas = require "lib.schemas"
local settings = require "lib.settings"

local M = {}

-- The admin named in the configuration, created if no user of that name exists. An existing
-- account is never changed: the environment is read at every start, and a forgotten variable must
-- not reset a password or a role someone has since changed.
local function bootstrap_configured()
  local name, pw = settings.get("admin_username"), settings.get("admin_password")
  local age = settings.get("admin_userage")
  if (name or "") == "" or (pw or "") == "" then
    return nil, "admin bootstrap: set both LUAHOST_ADMIN_USERNAME and LUAHOST_ADMIN_PASSWORD, " ..
                "or neither"
  end
  local ok, why = schemas.check_bootstrap(name, pw, age)
  if not ok then return nil, why end
  local doc, err = users.create({ username = name, password = pw, userage = age, role = "admin" })
  if doc then
    log.info("admin bootstrap: created admin '" .. name .. "'")
  elseif err == "username_taken" then
    log.info("admin bootstrap: user '" .. name .. "' exists; left unchanged")
  else
    return nil, "admin bootstrap: " .. tostring(err)
  end
  return true
end

-- Development only: a fresh database with no admin would leave nobody able to create users, so
-- make one with a random password and say so where the developer is looking.
local function bootstrap_dev()
  local n, err = users.count_admins()
  if not n then return nil, "admin bootstrap: " .. tostring(err) end
  if n > 0 then return true end
  local pw = core.random_hex(12)
  local doc
  doc, err = users.create({ username = "admin", password = pw, userage = 0, role = "admin" })
  if not doc then
    if err == "username_taken" then
      log.warn("admin bootstrap: no admin exists and the name 'admin' is taken by a " ..
               "non-admin; set LUAHOST_ADMIN_USERNAME and LUAHOST_ADMIN_PASSWORD to create one")
      return true
    end
    return nil, "admin bootstrap: " .. tostring(err)
  end
  log.warn("****************************************************************************")
  log.warn("DEVELOPMENT MODE: created admin user 'admin' with password '" .. pw .. "'")
  log.warn("This is shown once. Set LUAHOST_ADMIN_USERNAME/LUAHOST_ADMIN_PASSWORD instead.")
  log.warn("****************************************************************************")
  return true
end

-- on_start hook: true | nil, err
function M.start()
  local ok, err = users.ensure_index()
  if not ok then
    -- MongoDB says duplicate_key; FerretDB reports the same violation as a generic error. Only
    -- a database that is down or busy is surely not about the data, so name the fix otherwise.
    -- (Outcomes worth retrying say nothing about the stored data: the hook is simply retried.)
    if not response.retryable(err) then
      log.error("cannot create the unique index on username_lc: stored users collide or " ..
                "lack username_lc (data from the original service?). Run `luahost migrate`, " ..
                "resolve the conflicts it lists, then restart")
    end
    return nil, "creating the username_lc index: " .. tostring(err)
  end
  local stale
  stale, err = users.needs_migration()
  if stale == nil then return nil, "checking the user documents: " .. tostring(err) end
  if stale then
    log.error("some users have no name key yet (documents of an older luahost or of the " ..
              "original service): run `luahost migrate`, resolve the conflicts it lists, then " ..
              "restart")
    return nil, "users need `luahost migrate`"
  end
  ok, err = users.ensure_admin_guard()
  if not ok then return nil, "creating the admin guard: " .. tostring(err) end
  ok, err = throttle.prepare()
  if not ok then return nil, "preparing the login counters: " .. tostring(err) end
  local has_name = settings.get("admin_username") ~= ""
  local has_pw = settings.get("admin_password") ~= ""
  if has_name or has_pw then
    return bootstrap_configured()
  end
  if core.config and core.config.dev then return bootstrap_dev() end
  return true
end

-- commands.migrate hook: `luahost migrate [--dry-run]`. Result table | nil, err. ok is false
-- while conflicts remain; once there are none the unique index is created too, so the next start
-- finds everything in place. With --dry-run nothing is written: `migrated` counts the documents
-- that would change. Any other argument is refused before anything is read.
function M.migrate(args)
  local dry_run = false
  for _, a in ipairs(args or {}) do
    if a == "--dry-run" then
      dry_run = true
    else
      return nil, "unknown argument '" .. tostring(a) .. "' (usage: luahost migrate [--dry-run])"
    end
  end
  local result, err = users.migrate(dry_run)
  if not result then return nil, err end
  if dry_run then
    result.index = result.ok and "would be created" or "would not be created: conflicts remain"
  elseif result.ok then
    local ok, ierr = users.ensure_index()
    result.index = ok and "username_lc unique index in place"
                   or ("index failed: " .. tostring(ierr))
    if not ok then result.ok = false end
  else
    result.index = "not created: resolve the conflicts (rename or delete one account of each), " ..
                   "then run `luahost migrate` again"
  end
  return result
end

return M
