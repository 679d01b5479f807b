-- policies/api_key.lua: who may write notes. A request authenticates with an `X-Api-Key` header;
-- the keys are data here (an operator would keep them in the database or in configuration).
-- `from_request` turns a request into a principal or a refusal (app.lua hands it to the host as
-- `authenticate`); the policies are pure functions.

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
}
