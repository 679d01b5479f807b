-- routes/notes.lua: a notes resource. Reading needs any key, writing a writer's key. The
-- schemas say what a client may send; the runtime answers 401, 403, 415 and 422 before a
-- handler runs, so the handlers only deal with valid input.
local json = require "luahost.json"
local mongo = require "luahost.mongo"
local response = require "luahost.response"

local function notes() return mongo.collection("notes") end

local function public(doc)
  return { id = tostring(doc._id), title = doc.title, body = doc.body,
           created_at = tostring(doc.created_at), author = doc.author }
end

return {
  routes = {
    { method = "POST", path = "/notes", policy = "writer",
      body = { fields = {
        title = { type = "string", required = true, min_len = 1, max_len = 100, no_control = true },
        body = { type = "string", max_len = 2000, default = "" },
      } },
      handler = function(req)
        local doc = { title = req.body.title, body = req.body.body, author = req.user.name,
                      created_at = mongo.now() }
        local id, err = notes():insert_one(doc)
        if not id then return nil, err end
        doc._id = id
        return response.created("Note created", public(doc))
      end },

    { method = "GET", path = "/notes", policy = "reader",
      query = { fields = { limit = { type = "integer", min = 1, max = 50, default = 20 } } },
      handler = function(req)
        local docs, err = notes():find({}, { sort = { { "created_at", -1 }, { "_id", -1 } },
                                            limit = req.query.limit })
        if not docs then return nil, err end
        local out = {}
        for i, d in ipairs(docs) do out[i] = public(d) end
        return response.list("Notes", out)
      end },

    { method = "GET", path = "/notes/{id}", policy = "reader", handler = function(req)
        local oid = mongo.objectid(req.params.id)
        if not oid then return response.error(404, "not_found", "Note not found") end
        local doc, err = notes():find_one({ _id = oid })
        if err then return nil, err end
        if not doc then return response.error(404, "not_found", "Note not found") end
        return response.ok("Note", public(doc))
      end },

    { method = "DELETE", path = "/notes/{id}", policy = "writer", handler = function(req)
        local oid = mongo.objectid(req.params.id)
        if not oid then return response.error(404, "not_found", "Note not found") end
        local n, err = notes():delete_one({ _id = oid })
        if not n then return nil, err end
        if n == 0 then return response.error(404, "not_found", "Note not found") end
        return response.ok("Note deleted", json.null)
      end },
  },
}
