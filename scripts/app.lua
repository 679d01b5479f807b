-- app.lua: the user service's application hooks, in the one place a reader looks for them.
--
-- Owns: who the caller is (`authenticate`, from lib/auth.lua), what must be true before the
-- service is ready (`on_start`: the unique username index and the bootstrap admin, lib/setup.lua)
-- and the command-line commands (`luahost migrate`). Routes live in routes/, policies in
-- policies/; the loader refuses a second module that defines any of these hooks.

local auth = require "lib.auth"
local settings = require "lib.settings"
local setup = require "lib.setup"

settings.check()

return {
  authenticate = auth.from_request,
  on_start = setup.start,
  commands = { migrate = setup.migrate },
}
