-- The benchmark's trivial Lua route (bench/run, scenario 1): the envelope
-- {message, response_status, response_data = {id}} built from `?id=`, as a handler typically
-- answers; bench/bench.py has nginx + lua-nginx-module produce the same body with cjson.
local response = require "luahost.response"

return { routes = {
  { method = "GET", path = "/echo", handler = function(req)
      return response.ok("ok", { id = req.query.id })
    end },
} }
