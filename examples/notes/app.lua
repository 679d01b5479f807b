-- app.lua: the notes example's application hooks: who the caller is (an API key,
-- policies/api_key.lua) and what must exist before it serves (the index the list route sorts on).
local mongo = require "luahost.mongo"
local api_key = require "policies.api_key"

return {
  authenticate = api_key.from_request,
  on_start = function()
    local ok, err = mongo.collection("notes"):create_index({ { "created_at", -1 } },
                                                           { name = "created_at_desc" })
    if not ok then return nil, err end
    return true
  end,
}
