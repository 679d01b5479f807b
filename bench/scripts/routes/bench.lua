-- The benchmark's trivial Lua route: a small JSON envelope, as a handler typically returns.
local response = require "luahost.response"

return { routes = {
  { method = "GET", path = "/hello", handler = function()
      return response.ok("hello", { greeting = "hello, world", n = 1 })
    end },
} }
