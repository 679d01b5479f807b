-- app.lua: the user service's application hooks, in the one place a reader looks for them.
--
-- Owns: who the caller is (`authenticate`, from lib/auth.lua), what must be true before the
-- service is ready (`on_start`: the unique username index and the bootstrap admin, lib/setup.lua)
-- the command-line commands (`luahost migrate`) and who may reload over the public listener. Routes live in routes/, policies in
-- policies/; the loader refuses a second module that defines any of these hooks.

local auth = require "lib.auth"
local settings = require "lib.settings"
local setup = require "lib.setup"

settings.check()

return {
  authenticate = auth.from_request,
  on_start = setup.start,
  commands = { migrate = setup.migrate },
  -- GET and POST /admin/reload on the public listener (the reload status and a reload), for
  -- admins (policies/rbac.lua); the admin listener serves them to operators without a token.
  admin_policy = "admin",
}
