-- policies/api_key.lua: who may write notes. A request authenticates with an `X-Api-Key` header;
-- the keys are data here (an operator would keep them in the database or in configuration).
-- `from_request` turns a request into a principal or a refusal (app.lua hands it to the host as
-- `authenticate`); the policies are pure functions, and `tests` (policy tests: `luahost check`
-- runs them) pin down who may write.

local KEYS = {
  ["example-writer-key"] = { name = "writer", can_write = true },
  ["example-reader-key"] = { name = "reader", can_write = false },
}

return {
  from_request = function(req)
    local key = req.headers["x-api-key"]
    local who = key and KEYS[key]
    if not who then return nil, "invalid_api_key", "Send a valid X-Api-Key header" end
    return who
  end,
  policies = {
    reader = { authenticated = true },
    writer = { authenticated = true, allow = function(user) return user.can_write end },
  },
  tests = {
    { name = "a reader may not write a note", policy = "writer", user = KEYS["example-reader-key"],
      request = { method = "POST", path = "/notes", body = { title = "x" } }, expect = "deny" },
    { name = "a writer may delete a note", policy = "writer", user = KEYS["example-writer-key"],
      request = { method = "DELETE", path = "/notes/65a1b2c3d4e5f60718293a4b" }, expect = "allow" },
  },
}
