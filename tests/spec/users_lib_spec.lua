-- Specs for the user service's helper modules under scripts/lib/: the validation schemas (run by
-- the real luahost.validate), regex escaping, the list filter and sort, user serialisation, the
-- migration rules, the throttle's keys and the bearer-token parser. Host modules that need the C
-- host (mongo, password, jwt, ratelimit) are test doubles here; their behaviour against a real
-- database is covered by tests/integration/.
-- luahost.unicode is the real ICU binding (build/lua/luahost/unicode.so, on LUA_CPATH).
-- Run: LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/users_lib_spec.lua
package.path = "scripts/?.lua;host/lua/?.lua;" .. package.path

-- Test doubles ------------------------------------------------------------------------------------

package.path = "tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"
local json_double = support.json

-- Stand-ins for luahost.mongo's value types: an ObjectId prints as its hex, a date as RFC 3339.
local OID_MT = { __tostring = function(o) return o.hex end,
                 __eq = function(a, b) return a.hex == b.hex end }
local DATE_MT = { __tostring = function(d) return d.text end }
local mongo_double = {
  objectid = function(hex)
    if type(hex) ~= "string" or not hex:match("^%x+$") or #hex ~= 24 then
      return nil, "bad_value"
    end
    return setmetatable({ hex = hex:lower() }, OID_MT)
  end,
  now = function() return setmetatable({ text = "2026-01-02T03:04:05.678Z" }, DATE_MT) end,
  collection = function() error("specs must not reach the database") end,
}
local function date(text) return setmetatable({ text = text }, DATE_MT) end

local core_double = { config = { app = { users_collection = "users" } } }
local ratelimit_double = { count = function() return 0, 0 end, incr = function() end,
                           reset = function() end }

local doubles = {
  ["luahost"] = core_double,
  ["luahost.json"] = json_double,
  ["luahost.log"] = { debug = function() end, info = function() end, warn = function() end,
                      error = function() end },
  ["luahost.mongo"] = mongo_double,
  ["luahost.password"] = {},
  ["luahost.jwt"] = {},
  ["luahost.ratelimit"] = ratelimit_double,
  ["luahost.metrics"] = { counter = function() return { inc = function() end } end },
}
for name, mod in pairs(doubles) do support.provide(name, mod) end
support.load_file("luahost.validate", "host/lua/validate.lua")
-- The real script modules, even when another spec in this run put a stand-in in their place.
for _, name in ipairs({ "lib.schemas", "lib.users", "lib.throttle", "lib.auth", "lib.dblock" }) do
  package.loaded[name] = nil
  package.preload[name] = nil
end

local json = require "luahost.json"
local validate = require "luahost.validate"
local schemas = require "lib.schemas"
local users = require "lib.users"
local throttle = require "lib.throttle"
local auth = require "lib.auth"

-- "field:code" of every error, in the validator's order.
local function codes(errs)
  local out = {}
  for i, e in ipairs(errs or {}) do out[i] = e.field .. ":" .. e.code end
  return out
end

local function body_codes(schema, value)
  local values, errs = validate.body(schema, value)
  assert.is_nil(values)
  return codes(errs)
end

local function query_codes(args)
  local values, errs = validate.query(schemas.list_query, args)
  assert.is_nil(values)
  return codes(errs)
end

describe("lib/schemas.lua", function()
  it("every schema is well formed", function()
    for _, name in ipairs({ "create_user", "update_user", "login_form", "list_query" }) do
      assert.is_true(validate.check_schema(schemas[name]), name)
    end
  end)

  describe("create_user", function()
    local function good()
      return { username = "alice", password = "securepassword", userage = 25 }
    end

    it("accepts the seed's example and defaults role to user", function()
      local v = validate.body(schemas.create_user, good())
      assert.same({ username = "alice", password = "securepassword", userage = 25,
                    role = "user" }, v)
      local b = good(); b.role = "admin"
      assert.equal("admin", validate.body(schemas.create_user, b).role)
    end)

    it("requires username, password and userage", function()
      assert.same({ "password:missing", "userage:missing", "username:missing" },
                  body_codes(schemas.create_user, {}))
    end)

    it("bounds username to 1-64 characters without control characters", function()
      local b = good(); b.username = ""
      assert.same({ "username:too_short" }, body_codes(schemas.create_user, b))
      b.username = string.rep("a", 65)
      assert.same({ "username:too_long" }, body_codes(schemas.create_user, b))
      b.username = string.rep("\195\169", 64)                  -- 64 characters, 128 bytes
      assert.is_table((validate.body(schemas.create_user, b)))
      b.username = "al\nice"
      assert.same({ "username:control_characters" }, body_codes(schemas.create_user, b))
      b.username = "al\0ice"
      assert.same({ "username:control_characters" }, body_codes(schemas.create_user, b))
    end)

    it("bounds password to 8-128 characters", function()
      local b = good(); b.password = "short"
      assert.same({ "password:too_short" }, body_codes(schemas.create_user, b))
      b.password = string.rep("p", 129)
      assert.same({ "password:too_long" }, body_codes(schemas.create_user, b))
      b.password = string.rep("p", 128)
      assert.is_table((validate.body(schemas.create_user, b)))
    end)

    it("takes userage as an integer from 0 to 150 and role as user or admin", function()
      for _, age in ipairs({ -1, 151, 2.5, "25" }) do
        local b = good(); b.userage = age
        local c = body_codes(schemas.create_user, b)
        assert.equal(1, #c)
        assert.matches("^userage:", c[1])
      end
      local b = good(); b.role = "root"
      assert.same({ "role:not_allowed" }, body_codes(schemas.create_user, b))
    end)

    it("refuses unknown fields, operator keys, objects, arrays and null", function()
      local b = good(); b.is_admin = true
      assert.same({ "is_admin:unknown_field" }, body_codes(schemas.create_user, b))
      b = good(); b["$set"] = { role = "admin" }
      assert.same({ "$set:invalid_key" }, body_codes(schemas.create_user, b))
      b = good(); b.username = { ["$gt"] = "" }
      assert.same({ "username:type" }, body_codes(schemas.create_user, b))
      b = good(); b.username = json.array({ "a" })
      assert.same({ "username:type" }, body_codes(schemas.create_user, b))
      b = good(); b.userage = json.null
      assert.same({ "userage:type" }, body_codes(schemas.create_user, b))
    end)
  end)

  describe("username identity rules", function()
    it("answer 422 with the rule's code on create and update", function()
      local base = { password = "longenough", userage = 3 }
      for name, code in pairs({ ["root "] = "whitespace_edge", ["ro\226\128\139ot"] = "format",
                                ["\209\128oot"] = "mixed_script",
                                ["\225\133\159"] = "empty" }) do
        base.username = name
        assert.same({ "username:" .. code }, body_codes(schemas.create_user, base))
        assert.same({ "username:" .. code }, body_codes(schemas.update_user, { username = name }))
      end
      base.username = "\195\137mile Zola"
      assert.is_table((validate.body(schemas.create_user, base)))
    end)

    it("apply to the bootstrap admin too", function()
      local ok, why = schemas.check_bootstrap("admin\226\128\174", "password1", 1)
      assert.is_nil(ok)
      assert.matches("LUAHOST_ADMIN_USERNAME", why)
    end)
  end)

  describe("update_user", function()
    it("takes any subset of the fields", function()
      assert.same({ userage = 30 }, validate.body(schemas.update_user, { userage = 30 }))
      assert.same({ username = "newname", password = "newpassword" },
                  validate.body(schemas.update_user,
                                { username = "newname", password = "newpassword" }))
    end)

    it("refuses an empty body with 422 and never invents a role", function()
      assert.same({ ":empty" }, body_codes(schemas.update_user, {}))
      assert.is_nil(validate.body(schemas.update_user, { userage = 1 }).role)
    end)

    it("applies the create rules to each field", function()
      assert.same({ "password:too_short" }, body_codes(schemas.update_user, { password = "x" }))
      assert.same({ "username:too_short" }, body_codes(schemas.update_user, { username = "" }))
      assert.same({ "role:not_allowed" }, body_codes(schemas.update_user, { role = "owner" }))
      assert.same({ "token_version:unknown_field" },
                  body_codes(schemas.update_user, { token_version = 0 }))
    end)
  end)

  describe("login_form", function()
    it("needs username and password, with no create-time password rules", function()
      local v = validate.form(schemas.login_form, { username = "alice", password = "x" })
      assert.same({ username = "alice", password = "x" }, v)
      local _, errs = validate.form(schemas.login_form, { username = "alice" })
      assert.same({ "password:missing" }, codes(errs))
      assert.equal("form", errs[1]["in"])
    end)

    it("accepts and ignores the OAuth2 password-grant fields", function()
      local v = validate.form(schemas.login_form, {
        username = "alice", password = "pw", grant_type = "password", scope = "",
        client_id = "app", client_secret = "s",
      })
      assert.equal("alice", v.username)
    end)

    it("refuses other fields and repeated fields", function()
      local _, errs = validate.form(schemas.login_form,
                                    { username = "a", password = "b", role = "admin" })
      assert.same({ "role:unknown_field" }, codes(errs))
      _, errs = validate.form(schemas.login_form, { username = { "a", "b" }, password = "b" })
      assert.same({ "username:type" }, codes(errs))
    end)
  end)

  describe("list_query", function()
    it("fills the defaults", function()
      assert.same({ skip = 0, limit = 10, sort_by = "username", sort_order = "asc" },
                  validate.query(schemas.list_query, {}))
    end)

    it("bounds skip to 0-10000 and limit to 1-100", function()
      assert.same({ "skip:too_large" }, query_codes({ skip = "10001" }))
      assert.same({ "skip:too_small" }, query_codes({ skip = "-1" }))
      assert.same({ "limit:too_small" }, query_codes({ limit = "0" }))
      assert.same({ "limit:too_large" }, query_codes({ limit = "101" }))
      local v = validate.query(schemas.list_query, { skip = "10000", limit = "100" })
      assert.equal(10000, v.skip)
      assert.equal(100, v.limit)
    end)

    it("whitelists sort_by and sort_order", function()
      for _, f in ipairs({ "username", "userage", "created_at" }) do
        assert.equal(f, validate.query(schemas.list_query, { sort_by = f }).sort_by)
      end
      assert.same({ "sort_by:not_allowed" }, query_codes({ sort_by = "password_hash" }))
      assert.same({ "sort_order:not_allowed" }, query_codes({ sort_order = "up" }))
    end)

    it("takes inclusive ages and refuses min_age above max_age", function()
      local v = validate.query(schemas.list_query, { min_age = "20", max_age = "20" })
      assert.equal(20, v.min_age)
      assert.same({ "min_age:range" }, query_codes({ min_age = "30", max_age = "20" }))
      assert.same({ "min_age:type" }, query_codes({ min_age = "abc" }))
    end)

    it("refuses unknown parameters and operator-shaped ones", function()
      assert.same({ "role:unknown_field" }, query_codes({ role = "admin" }))
      assert.same({ "$where:invalid_key" }, query_codes({ ["$where"] = "1" }))
    end)
  end)

  describe("check_bootstrap", function()
    it("applies the create rules to the configured admin", function()
      assert.is_true(schemas.check_bootstrap("root", "longenough", 0))
      assert.is_nil(schemas.check_bootstrap("root", "short", 0))
      assert.is_nil(schemas.check_bootstrap("", "longenough", 0))
      assert.is_nil(schemas.check_bootstrap("ro\tot", "longenough", 0))
      assert.is_nil(schemas.check_bootstrap("root", "longenough", 151))
      local ok, why = schemas.check_bootstrap("root", "longenough", 1.5)
      assert.is_nil(ok)
      assert.matches("USERAGE", why)
    end)
  end)
end)

describe("lib/users.lua", function()
  describe("escape_regex", function()
    it("escapes every regex metacharacter", function()
      assert.equal("a\\.b\\*c\\+d\\?e", users.escape_regex("a.b*c+d?e"))
      assert.equal("\\^\\$\\|\\(\\)\\[\\]\\{\\}\\\\", users.escape_regex("^$|()[]{}\\"))
      assert.equal("\\.\\*", users.escape_regex(".*"))
    end)

    it("leaves ordinary text, including non-ASCII, as it is", function()
      assert.equal("alice_smith-2 x", users.escape_regex("alice_smith-2 x"))
      assert.equal("j\195\188rg", users.escape_regex("j\195\188rg"))
      assert.equal("%d", users.escape_regex("%d"))
    end)

    it("makes the escaped text match literally (checked with a Lua-pattern translation)", function()
      -- Every escaped metacharacter is a backslash pair; turning "\x" back into "x" must give the
      -- input, so nothing was dropped or left unescaped.
      local input = "a.b(c)[d]{e}^f$g|h?i*j+k\\l"
      local escaped = users.escape_regex(input)
      assert.equal(input, (escaped:gsub("\\(.)", "%1")))
      assert.is_nil(escaped:find("[^\\][%.%(%)%[%]%{%}%^%$%|%?%*%+]"))
    end)
  end)

  describe("normalize", function()
    it("lower-cases ASCII so Alice and alice are one name", function()
      assert.equal("alice", users.normalize("Alice"))
      assert.equal("alice", users.normalize("ALICE"))
      assert.equal(users.normalize("aLiCe"), users.normalize("AlIcE"))
    end)
  end)

  describe("serialize", function()
    local doc = {
      _id = mongo_double.objectid("65a1b2c3d4e5f60718293a4b"),
      username = "Alice", username_lc = "alice", password_hash = "$argon2id$v=19$secret",
      userage = 25, role = "user", token_version = 3,
      created_at = date("2026-01-02T03:04:05.678Z"), updated_at = date("2026-01-03T00:00:00.000Z"),
      hashed_password = "$2b$12$legacy",
    }

    it("shows exactly id, username, userage, role and RFC 3339 timestamps", function()
      assert.same({
        id = "65a1b2c3d4e5f60718293a4b", username = "Alice", userage = 25, role = "user",
        created_at = "2026-01-02T03:04:05.678Z", updated_at = "2026-01-03T00:00:00.000Z",
      }, users.serialize(doc))
    end)

    it("never carries a hash or internal field", function()
      local out = users.serialize(doc)
      for k, v in pairs(out) do
        assert.is_nil(tostring(v):find("$argon2", 1, true), k)
        assert.is_nil(tostring(v):find("$2b$", 1, true), k)
      end
      assert.is_nil(out.password_hash)
      assert.is_nil(out.hashed_password)
      assert.is_nil(out.username_lc)
      assert.is_nil(out.token_version)
    end)

    it("shows missing fields of legacy documents as null", function()
      local out = users.serialize({ _id = mongo_double.objectid("65a1b2c3d4e5f60718293a4b"),
                                    username = "old" })
      assert.equal(json.null, out.userage)
      assert.equal(json.null, out.role)
      assert.equal(json.null, out.created_at)
      assert.equal(json.null, out.updated_at)
    end)

    it("principal adds the token version (0 when missing)", function()
      assert.equal(3, users.principal(doc).token_version)
      assert.equal("user", users.principal(doc).role)
      assert.equal(0, users.principal({ _id = doc._id }).token_version)
    end)
  end)

  describe("the projection", function()
    it("is an inclusion list that leaves every hash field out", function()
      local p = users.PUBLIC_PROJECTION
      for _, v in pairs(p) do assert.equal(1, v) end
      assert.is_nil(p.password_hash)
      assert.is_nil(p.password)
      assert.is_nil(p.hashed_password)
    end)
  end)

  describe("list_filter and list_sort", function()
    it("matches the lower-cased, escaped username as a substring without regex options", function()
      local f = users.list_filter({ username = "Al.i*" })
      assert.same({ ["$regex"] = "al\\.i\\*" }, f.username_lc)
      assert.is_nil(f.username)
    end)

    it("has no username condition for an absent or empty username", function()
      assert.same({}, users.list_filter({}))
      assert.same({}, users.list_filter({ username = "" }))
    end)

    it("turns min_age and max_age into an inclusive range", function()
      assert.same({ userage = { ["$gte"] = 20, ["$lte"] = 30 } },
                  users.list_filter({ min_age = 20, max_age = 30 }))
      assert.same({ userage = { ["$gte"] = 20 } }, users.list_filter({ min_age = 20 }))
      assert.same({ userage = { ["$lte"] = 30 } }, users.list_filter({ max_age = 30 }))
    end)

    it("sorts names case-insensitively and breaks ties by id in the same direction", function()
      assert.same({ { "username_lc", 1 }, { "_id", 1 } },
                  users.list_sort({ sort_by = "username", sort_order = "asc" }))
      assert.same({ { "userage", -1 }, { "_id", -1 } },
                  users.list_sort({ sort_by = "userage", sort_order = "desc" }))
      assert.same({ { "created_at", 1 }, { "_id", 1 } },
                  users.list_sort({ sort_by = "created_at" }))
    end)
  end)

  describe("oid_of", function()
    it("turns malformed ids into nil, never an error", function()
      assert.is_nil(users.oid_of("nope"))
      assert.is_nil(users.oid_of(string.rep("z", 24)))
      assert.is_nil(users.oid_of(nil))
      assert.is_table(users.oid_of("65a1b2c3d4e5f60718293a4b"))
    end)
  end)

  describe("migration_update", function()
    local now = date("2026-01-02T03:04:05.678Z")
    local oid = mongo_double.objectid("65a1b2c3d4e5f60718293a4b")

    it("brings a document of the original service to luahost's shape", function()
      local u = users.migration_update({ _id = oid, username = "Alice", userage = 30,
                                         hashed_password = "$2b$12$abc" }, now)
      assert.same({
        ["$set"] = { username_lc = "alice", username_skel = "alice", token_version = 0,
                     created_at = now, updated_at = now, role = "user",
                     password_hash = "$2b$12$abc" },
        ["$unset"] = { hashed_password = "" },
      }, u)
    end)

    it("also moves a hash stored as `password`, keeping the role", function()
      local u = users.migration_update({ _id = oid, username = "bob", role = "admin",
                                         password = "$2b$12$xyz" }, now)
      assert.equal("$2b$12$xyz", u["$set"].password_hash)
      assert.is_nil(u["$set"].role)
      assert.same({ password = "" }, u["$unset"])
    end)

    it("never overwrites an existing luahost hash, and drops the legacy copy", function()
      local u = users.migration_update({ _id = oid, username = "c", username_lc = "c",
        username_skel = "c", token_version = 2, created_at = now, updated_at = now, role = "user",
        password_hash = "$argon2id$new", hashed_password = "$2b$12$old" }, now)
      assert.same({ ["$unset"] = { hashed_password = "" } }, u)
    end)

    it("returns nil for a document that needs nothing", function()
      assert.is_nil(users.migration_update({ _id = oid, username = "D", username_lc = "d",
        username_skel = "d", token_version = 0, created_at = now, updated_at = now, role = "user",
        password_hash = "$argon2id$x" }, now))
    end)

    it("corrects a stale username_lc", function()
      local u = users.migration_update({ _id = oid, username = "Eve", username_lc = "old",
        username_skel = "eve", token_version = 0, created_at = now, updated_at = now,
        role = "user", password_hash = "$argon2id$x" }, now)
      assert.same({ ["$set"] = { username_lc = "eve" } }, u)
    end)

    it("recomputes keys under NFKC_Casefold and stores the name in NFC", function()
      -- "STRASSE" written by the original service: the key folds, the name keeps its case.
      local u = users.migration_update({ _id = oid, username = "STRASSE", username_lc = "strasse",
        token_version = 0, created_at = now, updated_at = now, role = "user",
        password_hash = "$argon2id$x" }, now)
      assert.same({ ["$set"] = { username_skel = "strasse" } }, u)
      -- An NFD spelling becomes NFC; straße folds to the same key as STRASSE.
      u = users.migration_update({ _id = oid, username = "E\204\129mile stra\195\159e",
        username_lc = "x", username_skel = "x", token_version = 0, created_at = now,
        updated_at = now, role = "user", password_hash = "$argon2id$x" }, now)
      assert.equal("\195\137mile stra\195\159e", u["$set"].username)
      assert.equal("\195\169mile strasse", u["$set"].username_lc)
    end)
  end)

  describe("identity", function()
    it("makes every spelling of one name one key, and look-alikes one skeleton", function()
      local a, b = users.identity("\195\137mile"), users.identity("E\204\129MILE")
      assert.equal(a.key, b.key)
      assert.equal("\195\137mile", a.name)                      -- stored as typed, in NFC
      assert.equal("E\204\129MILE" ~= b.name, true)             -- NFC, not the NFD input
      assert.equal(users.identity("bob").key,
                   users.identity("\239\189\130\239\189\143\239\189\130").key) -- fullwidth
      assert.equal(users.identity("STRASSE").key, users.identity("stra\195\159e").key)
      -- All-Cyrillic "сор" is allowed, and looks like Latin "cop": same skeleton, other key.
      local cyr, lat = users.identity("\209\129\208\190\209\128"), users.identity("cop")
      assert.not_equal(cyr.key, lat.key)
      assert.equal(cyr.skeleton, lat.skeleton)
    end)

    it("refuses what the identity rules refuse, with the reason", function()
      local cases = {
        ["root "] = "whitespace_edge", [" root"] = "whitespace_edge",
        ["ro\226\128\139ot"] = "format",                -- zero-width space
        ["abc\226\128\174def"] = "format",              -- right-to-left override
        ["\225\133\159\225\133\159"] = "empty",        -- only Hangul fillers
        ["\209\128oot"] = "mixed_script",                -- Cyrillic р with Latin
        ["a\238\128\128"] = "private_use",
        ["a\205\184"] = "unassigned",
        ["a\1b"] = "control",
      }
      for name, why in pairs(cases) do
        local ident, reason = users.identity(name)
        assert.is_nil(ident, name)
        assert.equal(why, reason, name)
      end
    end)

    it("normalize is the NFKC_Casefold key, ASCII lower-casing for text ICU cannot read", function()
      assert.equal("strasse", users.normalize("STRA\195\159E"))
      assert.equal("abc\255", users.normalize("ABC\255"))
    end)
  end)
end)

describe("lib/throttle.lua", function()
  local attempts_double = {}

  it("keys the three counters by pair, username and address", function()
    local pair, user, addr = throttle.keys("alice", "10.0.0.1")
    assert.equal("login:pair:10.0.0.1|alice", pair)
    assert.equal("login:user:alice", user)
    assert.equal("login:addr:10.0.0.1", addr)
  end)

  it("keeps keys short and unambiguous", function()
    local pair, user = throttle.keys(string.rep("x", 1000), "::1")
    assert.is_true(#pair < 256 and #user < 256)
    -- Addresses never contain "|", so the username part cannot shift into the address part.
    assert.not_equal(throttle.keys("b|c", "a"), throttle.keys("c", "a"))
    assert.equal("login:pair:a|b|c", (throttle.keys("b|c", "a")))
    assert.equal("login:addr:-", select(3, throttle.keys("a", "")))
  end)

  it("cuts a long name on a UTF-8 character boundary, so a key is always valid UTF-8", function()
    -- 43 CJK characters are 129 bytes: a cut at 128 bytes would split the last one.
    local cjk = string.rep("\230\188\162", 43)
    for _, name in ipairs({ cjk, "a" .. cjk, "ab" .. cjk, string.rep("\240\159\152\128", 40) }) do
      local pair, user = throttle.keys(name, "::1")
      assert.is_true(json.utf8_valid(pair), pair)
      assert.is_true(json.utf8_valid(user), user)
      local part = user:sub(#"login:user:" + 1)
      assert.is_true(#part <= 128 and #part >= 125)
      assert.equal(part, name:sub(1, #part))
    end
  end)

  it("gives back its place in worker memory when the database binding raises", function()
    core_double.config.app.throttle_store = "mongodb"
    local saved_coll, saved_now = mongo_double.collection, mongo_double.now
    local raising = function() error("binding raised", 0) end
    -- lib/throttle.lua keeps the first collection it gets: every spec here hands out this one.
    for _, m in ipairs({ "find_one", "find_one_and_update", "find", "insert_one", "delete_one",
                         "update_one" }) do
      attempts_double[m] = raising
    end
    mongo_double.collection = function() return attempts_double end
    mongo_double.now = function() return { ms = function() return 1000000 end } end
    mongo_double.date = function(ms) return ms end
    -- More attempts than the pair limit (5): each must fail with the binding's error, never
    -- wait for places that raised attempts kept (core.sleep is absent from the double).
    for _ = 1, 8 do
      local ok, err = pcall(throttle.reserve, "dave", "7.7.7.7")
      assert.is_false(ok)
      assert.equal("binding raised", err)
    end
    mongo_double.collection, mongo_double.now = saved_coll, saved_now
    core_double.config.app.throttle_store = nil
  end)

  it("aligns windows to the clock, so every host counts in the same one", function()
    assert.same({ 1, 1800 }, { throttle.window(1799, 900) })
    assert.same({ 1, 1800 }, { throttle.window(1800 - 0.001, 900) })
    assert.same({ 2, 2700 }, { throttle.window(1800, 900) })
  end)

  -- luahost.ratelimit's semantics in Lua (counters that only grow or are forgotten), on a fake
  -- clock that core.sleep advances.
  local function memory_host()
    local clock, counters = 1000000, {}
    ratelimit_double.count = function(key) return counters[key] or 0, 0 end
    ratelimit_double.incr = function(key)
      counters[key] = (counters[key] or 0) + 1
      return counters[key], 0
    end
    ratelimit_double.reset = function(key) counters[key] = nil end
    mongo_double.now = function() return { ms = function() return clock end } end
    core_double.sleep = function(ms) clock = clock + ms end
    core_double.config.app.throttle_store = "memory"
    return function()
      ratelimit_double.count = function() return 0, 0 end
      ratelimit_double.incr = function() end
      ratelimit_double.reset = function() end
      core_double.sleep = nil
      core_double.config.app.throttle_store = nil
    end
  end

  it("memory store: reserves before the check, so concurrent guesses stay within the limit",
     function()
    local restore = memory_host()
    -- Five attempts on one pair in flight at once (the pair limit): a sixth waits, then is
    -- refused, however many come.
    local tickets = {}
    for i = 1, 5 do
      local ok, t = throttle.reserve("alice", "1.2.3.4")
      assert.is_true(ok)
      tickets[i] = t
    end
    for _ = 1, 3 do
      local ok, retry = throttle.reserve("alice", "1.2.3.4")
      assert.is_false(ok)
      assert.equal(1, retry)
    end
    -- Another address is not held up by this pair.
    assert.is_true((throttle.reserve("alice", "5.6.7.8")))
    -- A success or an abandoned check gives its place back; a failure keeps it.
    throttle.succeeded(tickets[1])
    throttle.abandon(tickets[2])
    throttle.failed(tickets[3])
    local ok, t = throttle.reserve("alice", "1.2.3.4")
    assert.is_true(ok)
    throttle.failed(t)
    ok, t = throttle.reserve("alice", "1.2.3.4")
    assert.is_true(ok)
    throttle.failed(t)
    throttle.failed(tickets[4])
    throttle.failed(tickets[5])
    -- Five failures: locked until the window ends (clock 1000 s, window 900 s: 800 s left).
    local retry
    ok, retry = throttle.reserve("alice", "1.2.3.4")
    assert.is_false(ok)
    assert.is_true(retry > 700 and retry <= 800, tostring(retry))
    restore()
  end)

  it("memory store: a success forgives the pair's failures", function()
    local restore = memory_host()
    for _ = 1, 4 do
      local _, t = throttle.reserve("erin", "1.2.3.4")
      throttle.failed(t)
    end
    local _, t = throttle.reserve("erin", "1.2.3.4")
    throttle.succeeded(t)
    for _ = 1, 5 do
      local ok
      ok, t = throttle.reserve("erin", "1.2.3.4")
      assert.is_true(ok)
      throttle.failed(t)
    end
    assert.is_false((throttle.reserve("erin", "1.2.3.4")))
    restore()
  end)

  it("falls back to the memory store when the database does not answer", function()
    local saved = mongo_double.collection
    local fail = function() return nil, "unavailable" end
    for _, m in ipairs({ "find_one", "find_one_and_update", "find", "insert_one", "delete_one",
                         "update_one" }) do
      attempts_double[m] = fail
    end
    mongo_double.collection = function() return attempts_double end
    mongo_double.now = function() return { ms = function() return 1000000 end } end
    mongo_double.date = function(ms) return ms end
    mongo_double.build_info = function() return { version = "7.0" } end
    ratelimit_double.count = function(key)
      if key:find("^login:pair:9%.9%.9%.9|bob@%d+:f$") then return 5, 60 end
      return 0, 0
    end
    ratelimit_double.incr = function() return 1, 0 end
    -- The host's own counters still refuse a locked-out pair ...
    local ok, retry = throttle.reserve("bob", "9.9.9.9")
    assert.is_false(ok)
    assert.equal(800, retry)                  -- to the end of the window (900 s; now 1000 s)
    -- ... and let anyone else try.
    local ok2, ticket = throttle.reserve("carol", "9.9.9.9")
    assert.is_true(ok2)
    assert.equal("memory", ticket.store)
    mongo_double.collection = saved
  end)
end)

describe("lib/auth.lua bearer_token", function()
  it("takes the token of a Bearer header, the scheme in any case", function()
    assert.equal("abc.def.ghi", auth.bearer_token("Bearer abc.def.ghi"))
    assert.equal("abc.def.ghi", auth.bearer_token("bearer abc.def.ghi"))
    assert.equal("abc.def.ghi", auth.bearer_token("BEARER   abc.def.ghi  "))
  end)

  it("refuses other schemes and malformed headers", function()
    assert.is_nil(auth.bearer_token("Basic dXNlcjpwdw=="))
    assert.is_nil(auth.bearer_token("Bearer"))
    assert.is_nil(auth.bearer_token("Bearer a b"))
    assert.is_nil(auth.bearer_token(""))
    assert.is_nil(auth.bearer_token(nil))
  end)
end)
