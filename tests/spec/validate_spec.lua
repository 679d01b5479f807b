-- Specs for luahost.validate (host/lua/validate.lua): schema shape, body/query/form checking,
-- error codes and ordering, UTF-8 rules. Run: luajit /usr/bin/busted tests/spec/validate_spec.lua
package.path = "host/lua/?.lua;" .. package.path

package.path = "tests/spec/support/?.lua;" .. package.path
local support = require "spec_host"
support.provide("luahost.json", support.json)
support.load_file("luahost.validate", "host/lua/validate.lua")

local json = require "luahost.json"
local validate = require "luahost.validate"

local function user_schema()
  return {
    fields = {
      username = { type = "string", required = true, min_len = 1, max_len = 64, no_control = true },
      password = { type = "string", required = true, min_len = 8, max_len = 128 },
      userage  = { type = "integer", required = true, min = 0, max = 150 },
      role     = { type = "string", enum = { "user", "admin" }, default = "user" },
    },
  }
end

local function list_schema()
  return {
    fields = {
      limit      = { type = "integer", min = 1, max = 100, default = 10 },
      skip       = { type = "integer", min = 0, default = 0 },
      min_age    = { type = "number" },
      sort_order = { type = "string", enum = { "asc", "desc" }, default = "asc" },
      flag       = { type = "boolean" },
      username   = { type = "string", max_len = 64 },
    },
  }
end

local function good_user()
  return { username = "alice", password = "securepassword", userage = 25 }
end

-- Returns the list of "field:code" of an error list, in order.
local function codes(errs)
  local out = {}
  for i, e in ipairs(errs) do out[i] = e.field .. ":" .. e.code end
  return out
end

local function body_err(schema, value)
  local values, errs = validate.body(schema, value)
  assert.is_nil(values)
  assert.is_table(errs)
  return errs
end

describe("luahost.validate", function()
  describe("utf8", function()
    it("accepts ASCII, 2-, 3- and 4-byte sequences and counts characters", function()
      assert.equal(0, validate.utf8_len(""))
      assert.equal(5, validate.utf8_len("alice"))
      assert.equal(4, validate.utf8_len("J\195\188rg"))          -- Jürg
      assert.equal(1, validate.utf8_len("\226\130\172"))          -- €
      assert.equal(1, validate.utf8_len("\240\159\152\128"))      -- U+1F600
      assert.equal(1, validate.utf8_len("\244\143\191\191"))      -- U+10FFFF
      assert.equal(1, validate.utf8_len("\239\191\191"))          -- U+FFFF
      assert.is_true(validate.is_valid_utf8("h\195\169llo"))
    end)

    it("rejects overlong forms", function()
      assert.is_nil(validate.utf8_len("\192\128"))                -- C0 80 (overlong NUL)
      assert.is_nil(validate.utf8_len("\193\191"))                -- C1 BF
      assert.is_nil(validate.utf8_len("\224\128\175"))            -- E0 80 AF (overlong "/")
      assert.is_nil(validate.utf8_len("\224\159\191"))            -- E0 9F BF
      assert.is_nil(validate.utf8_len("\240\143\191\191"))        -- F0 8F BF BF
      assert.is_false(validate.is_valid_utf8("\192\175"))
    end)

    it("rejects surrogates and code points above U+10FFFF", function()
      assert.is_nil(validate.utf8_len("\237\160\128"))            -- U+D800
      assert.is_nil(validate.utf8_len("\237\191\191"))            -- U+DFFF
      assert.equal(1, validate.utf8_len("\237\159\191"))          -- U+D7FF is fine
      assert.is_nil(validate.utf8_len("\244\144\128\128"))        -- U+110000
      assert.is_nil(validate.utf8_len("\245\128\128\128"))        -- F5 lead byte
      assert.is_nil(validate.utf8_len("\255"))
    end)

    it("rejects truncated sequences and stray continuation bytes", function()
      assert.is_nil(validate.utf8_len("\195"))
      assert.is_nil(validate.utf8_len("ab\226\130"))
      assert.is_nil(validate.utf8_len("\240\159\152"))
      assert.is_nil(validate.utf8_len("\128"))
      assert.is_nil(validate.utf8_len("a\191b"))
      assert.is_nil(validate.utf8_len("\195a"))                   -- lead byte then ASCII
      assert.is_nil(validate.utf8_len("\226\40\161"))             -- bad second byte
    end)

    it("raises on a non-string argument", function()
      assert.has_error(function() validate.utf8_len(5) end)
      assert.has_error(function() validate.is_valid_utf8(nil) end)
    end)
  end)

  describe("check_schema", function()
    local function rejects(schema, fragment)
      local ok, err = validate.check_schema(schema)
      assert.is_nil(ok)
      assert.is_string(err)
      if fragment then
        assert.truthy(err:find(fragment, 1, true), "message '" .. err .. "' lacks '" .. fragment .. "'")
      end
    end

    it("accepts the documented shape", function()
      assert.is_true(validate.check_schema(user_schema()))
      assert.is_true(validate.check_schema(list_schema()))
      assert.is_true(validate.check_schema({
        fields = {
          code = { type = "string", pattern = "%u%u%d+", check = function() return true end },
          ratio = { type = "number", min = 0.5, max = 2.5, default = 1 },
          flag = { type = "boolean", default = false },
        },
        additional = true,
        check = function() return true end,
      }))
      assert.is_true(validate.check_schema({ fields = {} }))
    end)

    it("rejects unknown keys at every level", function()
      rejects({ fields = { userage = { type = "integer", minn = 0 } } },
              "field 'userage': unknown key 'minn'")
      rejects({ fields = {}, strict = true }, "unknown key 'strict'")
      rejects({ fields = { x = { type = "string", [1] = "y" } } }, "unknown key '1'")
    end)

    it("rejects wrong types", function()
      rejects(nil)
      rejects("schema")
      rejects({}, "'fields'")
      rejects({ fields = "x" }, "'fields'")
      rejects({ fields = { x = "string" } }, "field 'x'")
      rejects({ fields = { x = {} } }, "missing key 'type'")
      rejects({ fields = { x = { type = "date" } } }, "'type'")
      rejects({ fields = { x = { type = "string", required = "yes" } } }, "'required'")
      rejects({ fields = { x = { type = "string", no_control = 1 } } }, "'no_control'")
      rejects({ fields = { x = { type = "integer", min = 0.5 } } }, "'min'")
      rejects({ fields = { x = { type = "number", max = 0 / 0 } } }, "'max'")
      rejects({ fields = { x = { type = "number", max = math.huge } } }, "'max'")
      rejects({ fields = { x = { type = "string", min_len = -1 } } }, "'min_len'")
      rejects({ fields = { x = { type = "string", max_len = 1.5 } } }, "'max_len'")
      rejects({ fields = { x = { type = "string", pattern = 5 } } }, "'pattern'")
      rejects({ fields = { x = { type = "string", check = true } } }, "'check'")
      rejects({ fields = {}, additional = "no" }, "'additional'")
      rejects({ fields = {}, check = {} }, "'check'")
    end)

    it("rejects keys that do not apply to the field's type", function()
      rejects({ fields = { x = { type = "integer", min_len = 1 } } }, "'min_len'")
      rejects({ fields = { x = { type = "string", min = 1 } } }, "'min'")
      rejects({ fields = { x = { type = "boolean", pattern = "x" } } }, "'pattern'")
      rejects({ fields = { x = { type = "number", no_control = true } } }, "'no_control'")
    end)

    it("rejects min > max and min_len > max_len", function()
      rejects({ fields = { x = { type = "integer", min = 5, max = 1 } } }, "'min' is greater")
      rejects({ fields = { x = { type = "string", min_len = 5, max_len = 1 } } }, "'min_len' is greater")
    end)

    it("rejects malformed patterns", function()
      rejects({ fields = { x = { type = "string", pattern = "[a-" } } }, "not a valid Lua pattern")
      for _, p in ipairs { "%", "[a-", "[]", "[^]", "(%d", "%d)", "%b(", "%fx", "%f[a", "(a)%1", "[%" } do
        rejects({ fields = { x = { type = "string", pattern = p } } }, "not a valid Lua pattern")
      end
      for _, p in ipairs { "[]]", "[^]]", "%b()", "%f[%a]%a+", "(a)", "[%]]", "%%", "a-", "^x$" } do
        assert.is_true(validate.check_schema({ fields = { x = { type = "string", pattern = p } } }), p)
      end
    end)

    it("rejects enums that are empty, not lists, of the wrong type or with duplicates", function()
      rejects({ fields = { x = { type = "string", enum = {} } } }, "'enum'")
      rejects({ fields = { x = { type = "string", enum = "a" } } }, "'enum'")
      rejects({ fields = { x = { type = "string", enum = { a = 1 } } } }, "'enum'")
      rejects({ fields = { x = { type = "string", enum = { "a", 2 } } } }, "enum value 2")
      rejects({ fields = { x = { type = "integer", enum = { 1, 1.5 } } } }, "enum value 2")
      rejects({ fields = { x = { type = "string", enum = { "a", "a" } } } }, "twice")
    end)

    it("rejects defaults that do not validate", function()
      rejects({ fields = { x = { type = "integer", default = "10" } } }, "'default'")
      rejects({ fields = { x = { type = "integer", min = 1, max = 100, default = 0 } } }, "'default'")
      rejects({ fields = { x = { type = "string", enum = { "a", "b" }, default = "c" } } }, "'default'")
      rejects({ fields = { x = { type = "string", max_len = 2, default = "abc" } } }, "'default'")
      rejects({ fields = { x = { type = "string", pattern = "%d+", default = "x" } } }, "'default'")
      rejects({ fields = { x = { type = "string", default = "\255" } } }, "'default'")
      rejects({ fields = { x = { type = "integer", default = 5,
                                 check = function() return nil, "odd", "x must be even" end } } },
              "x must be even")
      rejects({ fields = { x = { type = "integer", default = 5,
                                 check = function() error("boom") end } } }, "boom")
      rejects({ fields = { x = { type = "integer", required = true, default = 5 } } }, "required")
    end)

    it("rejects field names no client could send", function()
      rejects({ fields = { ["$where"] = { type = "string" } } }, "invalid field name")
      rejects({ fields = { ["a.b"] = { type = "string" } } }, "invalid field name")
      rejects({ fields = { ["a\0b"] = { type = "string" } } }, "invalid field name")
      rejects({ fields = { [""] = { type = "string" } } }, "invalid field name")
      rejects({ fields = { [1] = { type = "string" } } }, "invalid field name")
    end)

    it("makes body/query/form raise on an invalid schema (a caller mistake)", function()
      local bad = { fields = { x = { type = "integr" } } }
      assert.has_error(function() validate.body(bad, {}) end)
      assert.has_error(function() validate.query(bad, {}) end)
      assert.has_error(function() validate.form(bad, {}) end)
      assert.has_error(function() validate.query(list_schema(), "limit=5") end)
    end)
  end)

  describe("body", function()
    it("returns typed values with defaults in a fresh table, never touching the input", function()
      local input = good_user()
      local values = assert(validate.body(user_schema(), input))
      assert.are_not.equal(input, values)
      assert.same({ username = "alice", password = "securepassword", userage = 25, role = "user" },
                  values)
      assert.same(good_user(), input)                       -- no default written into the input
      assert.is_nil(input.role)
    end)

    it("keeps a false default and a false value", function()
      local schema = { fields = { a = { type = "boolean", default = false }, b = { type = "boolean" } } }
      assert.same({ a = false, b = false }, validate.body(schema, { b = false }))
      assert.same({ a = true }, validate.body(schema, { a = true }))
    end)

    it("requires a JSON object", function()
      local expect = { { field = "", ["in"] = "body", code = "type",
                         message = "Request body must be a JSON object" } }
      assert.same(expect, body_err(user_schema(), json.array({})))
      assert.same(expect, body_err(user_schema(), json.array({ good_user() })))
      assert.same(expect, body_err(user_schema(), "alice"))
      assert.same(expect, body_err(user_schema(), 5))
      assert.same(expect, body_err(user_schema(), json.null))
      assert.same(expect, body_err(user_schema(), nil))
    end)

    it("reports missing required fields", function()
      local errs = body_err(user_schema(), {})
      assert.same({ "password:missing", "userage:missing", "username:missing" }, codes(errs))
      assert.equal("username is required", errs[3].message)
      for _, e in ipairs(errs) do assert.equal("body", e["in"]) end
    end)

    it("is strict about JSON types", function()
      local function type_code(value)
        local u = good_user()
        u.userage = value
        return codes(body_err(user_schema(), u))
      end
      assert.same({ "userage:type" }, type_code("5"))
      assert.same({ "userage:type" }, type_code(true))
      assert.same({ "userage:type" }, type_code(25.5))
      assert.same({ "userage:type" }, type_code({ ["$gt"] = 0 }))
      assert.same({ "userage:type" }, type_code(json.array({ 1 })))
      assert.same({ "userage:type" }, type_code(2 ^ 53))
      local u = good_user()
      u.username = { ["$gt"] = "" }
      assert.same({ "username:type" }, codes(body_err(user_schema(), u)))
      u = good_user()
      u.username = 12
      assert.same({ "username:type" }, codes(body_err(user_schema(), u)))
    end)

    it("accepts integral numbers up to 2^53-1 and folds -0 into 0", function()
      local schema = { fields = { n = { type = "integer" } } }
      assert.equal(2 ^ 53 - 1, validate.body(schema, { n = 2 ^ 53 - 1 }).n)
      assert.equal(-(2 ^ 53 - 1), validate.body(schema, { n = -(2 ^ 53 - 1) }).n)
      assert.equal(5, validate.body(schema, { n = 5.0 }).n)
      local z = validate.body(schema, { n = -0.0 }).n
      assert.equal(math.huge, 1 / z)
    end)

    it("checks numbers and booleans", function()
      local schema = { fields = { x = { type = "number", min = 0, max = 1 }, b = { type = "boolean" } } }
      assert.same({ x = 0.5, b = true }, validate.body(schema, { x = 0.5, b = true }))
      assert.same({ "b:type", "x:too_large" }, codes(body_err(schema, { x = 1.5, b = "true" })))
      assert.same({ "x:type" }, codes(body_err(schema, { x = 0 / 0 })))
      assert.same({ "x:type" }, codes(body_err(schema, { x = math.huge })))
      assert.same({ "x:type" }, codes(body_err(schema, { x = "0.5" })))
    end)

    it("treats json.null as a type error, even for optional fields", function()
      local u = good_user()
      u.role = json.null
      local errs = body_err(user_schema(), u)
      assert.same({ "role:type" }, codes(errs))
      assert.truthy(errs[1].message:find("null", 1, true))
      u = good_user()
      u.username = json.null
      assert.same({ "username:type" }, codes(body_err(user_schema(), u)))
    end)

    it("rejects unknown fields unless additional = true", function()
      local u = good_user()
      u.is_admin = true
      local errs = body_err(user_schema(), u)
      assert.same({ "is_admin:unknown_field" }, codes(errs))
      assert.equal("Unknown field 'is_admin'", errs[1].message)
      local schema = user_schema()
      schema.additional = true
      local values = assert(validate.body(schema, u))
      assert.is_true(values.is_admin)
    end)

    it("rejects operator-like and dotted keys even when additional = true", function()
      local schema = user_schema()
      schema.additional = true
      local u = good_user()
      u["$where"] = "1"
      u["a.b"] = 1
      u["x\0y"] = 1
      local errs = body_err(schema, u)
      assert.same({ "$where:invalid_key", "a.b:invalid_key", "x?y:invalid_key" }, codes(errs))
    end)

    it("makes unsafe client names safe to echo", function()
      local u = good_user()
      u["bad\255name"] = 1
      u[string.rep("k", 500)] = 1
      local errs = body_err(user_schema(), u)
      assert.equal(2, #errs)
      assert.equal("bad?name", errs[1].field)
      assert.equal("invalid_key", errs[1].code)
      assert.equal(100, #errs[2].field)
      assert.equal("unknown_field", errs[2].code)
    end)

    it("counts string lengths in characters, not bytes", function()
      local schema = { fields = { s = { type = "string", min_len = 2, max_len = 3 } } }
      assert.same({ s = "\195\169\195\169\195\169" }, validate.body(schema, { s = "\195\169\195\169\195\169" }))
      local errs = body_err(schema, { s = "\195\169\195\169\195\169\195\169" })
      assert.same({ "s:too_long" }, codes(errs))
      assert.equal("s must be 2 to 3 characters", errs[1].message)
      assert.same({ "s:too_short" }, codes(body_err(schema, { s = "\226\130\172" })))
    end)

    it("writes clear messages", function()
      local u = good_user()
      u.userage = 151
      u.username = ""
      local errs = body_err(user_schema(), u)
      assert.same({ "userage:too_large", "username:too_short" }, codes(errs))
      assert.equal("userage must be an integer between 0 and 150", errs[1].message)
      assert.equal("username must be 1 to 64 characters", errs[2].message)
      u = good_user()
      u.role = "root"
      errs = body_err(user_schema(), u)
      assert.same({ "role:not_allowed" }, codes(errs))
      assert.equal("role must be one of: user, admin", errs[1].message)
      u.userage = -1
      errs = body_err(user_schema(), u)
      assert.same({ "role:not_allowed", "userage:too_small" }, codes(errs))
    end)

    it("rejects invalid UTF-8 and control characters", function()
      local u = good_user()
      u.username = "al\237\160\128ce"
      assert.same({ "username:invalid_utf8" }, codes(body_err(user_schema(), u)))
      u.username = "al\nce"
      local errs = body_err(user_schema(), u)
      assert.same({ "username:control_characters" }, codes(errs))
      u.username = "al\0ce"
      assert.same({ "username:control_characters" }, codes(body_err(user_schema(), u)))
      u.username = "al\127ce"
      assert.same({ "username:control_characters" }, codes(body_err(user_schema(), u)))
      -- Without no_control, control characters are allowed but UTF-8 is still checked.
      u = good_user()
      u.password = "pass\tword"
      assert.truthy(validate.body(user_schema(), u))
      u.password = "password\192\128"
      assert.same({ "password:invalid_utf8" }, codes(body_err(user_schema(), u)))
    end)

    it("reports several problems of one field", function()
      local schema = { fields = { s = { type = "string", max_len = 3, no_control = true, pattern = "%a+" } } }
      assert.same({ "s:control_characters", "s:pattern", "s:too_long" },
                  codes(body_err(schema, { s = "ab\ncd" })))
    end)

    it("matches patterns against the whole string", function()
      local schema = { fields = { s = { type = "string", pattern = "%d+" } } }
      assert.truthy(validate.body(schema, { s = "123" }))
      assert.same({ "s:pattern" }, codes(body_err(schema, { s = "12a" })))
      assert.same({ "s:pattern" }, codes(body_err(schema, { s = "a12" })))
      local anchored = { fields = { s = { type = "string", pattern = "^%a+$" } } }
      assert.truthy(validate.body(anchored, { s = "abc" }))
      assert.same({ "s:pattern" }, codes(body_err(anchored, { s = "ab1" })))
      local dollar = { fields = { s = { type = "string", pattern = "%d+%$" } } }
      assert.truthy(validate.body(dollar, { s = "12$" }))
      assert.same({ "s:pattern" }, codes(body_err(dollar, { s = "12" })))
    end)

    it("runs field checks on otherwise valid values only", function()
      local calls = 0
      local schema = { fields = { n = { type = "integer", max = 100, check = function(v)
        calls = calls + 1
        if v % 2 == 1 then return nil, "odd", "n must be even" end
        return true
      end } } }
      assert.same({ n = 4 }, validate.body(schema, { n = 4 }))
      local errs = body_err(schema, { n = 5 })
      assert.same({ { field = "n", ["in"] = "body", code = "odd", message = "n must be even" } }, errs)
      calls = 0
      assert.same({ "n:too_large" }, codes(body_err(schema, { n = 101 })))
      assert.equal(0, calls)
    end)

    it("runs the cross-field check only when every field passed", function()
      local called = false
      local schema = {
        fields = { min = { type = "integer" }, max = { type = "integer" } },
        check = function(v)
          called = true
          if v.min and v.max and v.min > v.max then
            return nil, "min", "range", "min must not exceed max"
          end
          return true
        end,
      }
      assert.same({ min = 1, max = 2 }, validate.body(schema, { min = 1, max = 2 }))
      assert.same({ { field = "min", ["in"] = "body", code = "range", message = "min must not exceed max" } },
                  body_err(schema, { min = 3, max = 2 }))
      called = false
      body_err(schema, { min = "x", max = 2 })
      assert.is_false(called)
    end)

    it("reports all errors sorted by field, then code", function()
      local errs = body_err(user_schema(), {
        zeta = 1, username = "", userage = "x", ["$set"] = 1, role = "x", alpha = 2,
      })
      assert.same({ "$set:invalid_key", "alpha:unknown_field", "password:missing", "role:not_allowed",
                    "userage:type", "username:too_short", "zeta:unknown_field" }, codes(errs))
    end)
  end)

  describe("query", function()
    it("fills defaults and converts strings", function()
      assert.same({ limit = 10, skip = 0, sort_order = "asc" }, validate.query(list_schema(), {}))
      local args = { limit = "25", skip = "5", min_age = "18.5", sort_order = "desc", flag = "true",
                     username = "al" }
      assert.same({ limit = 25, skip = 5, min_age = 18.5, sort_order = "desc", flag = true, username = "al" },
                  validate.query(list_schema(), args))
      assert.equal("25", args.limit)                            -- input untouched
    end)

    it("parses integers strictly", function()
      local function parse(s)
        local values, errs = validate.query(list_schema(), { skip = s })
        if values then return values.skip end
        return errs[1].code
      end
      assert.equal(7, parse("007"))
      assert.equal(0, parse("0"))
      local z = parse("-0")
      assert.equal(0, z)
      assert.equal(math.huge, 1 / z)                            -- -0 folded into +0
      assert.equal(123456789012345, parse("123456789012345"))  -- 15 digits
      assert.equal("type", parse("1234567890123456"))          -- 16 digits
      assert.equal("type", parse(""))
      assert.equal("type", parse(" 5"))
      assert.equal("type", parse("5 "))
      assert.equal("type", parse("+5"))
      assert.equal("type", parse("1e3"))
      assert.equal("type", parse("0x10"))
      assert.equal("type", parse("5.0"))
      assert.equal("type", parse("-"))
      assert.equal("type", parse("--5"))
      assert.equal("type", parse("inf"))
      assert.equal("too_small", parse("-1"))
    end)

    it("parses numbers as plain decimals", function()
      local function parse(s)
        local values, errs = validate.query(list_schema(), { min_age = s })
        if values then return values.min_age end
        return errs[1].code
      end
      assert.equal(18, parse("18"))
      assert.equal(-2.5, parse("-2.5"))
      assert.equal("type", parse("1e3"))
      assert.equal("type", parse(".5"))
      assert.equal("type", parse("5."))
      assert.equal("type", parse("nan"))
      assert.equal("type", parse("0x1p4"))
      assert.equal("type", parse(""))
    end)

    it("parses booleans from true/false/1/0 only", function()
      local function parse(s)
        local values, errs = validate.query(list_schema(), { flag = s })
        if values then return values.flag end
        return errs[1].code
      end
      assert.is_true(parse("true"))
      assert.is_true(parse("1"))
      assert.is_false(parse("false"))
      assert.is_false(parse("0"))
      assert.equal("type", parse("yes"))
      assert.equal("type", parse("TRUE"))
      assert.equal("type", parse(""))
    end)

    it("reports range, enum and unknown parameters with in = query", function()
      local values, errs = validate.query(list_schema(),
        { limit = "0", sort_order = "up", sort_by = "password_hash" })
      assert.is_nil(values)
      assert.same({ "limit:too_small", "sort_by:unknown_field", "sort_order:not_allowed" }, codes(errs))
      assert.equal("limit must be an integer between 1 and 100", errs[1].message)
      assert.equal("Unknown query parameter 'sort_by'", errs[2].message)
      for _, e in ipairs(errs) do assert.equal("query", e["in"]) end
    end)

    it("rejects repeated parameters and invalid keys", function()
      local _, errs = validate.query(list_schema(), { limit = { "1", "2" }, ["$gt"] = "" })
      assert.same({ "$gt:invalid_key", "limit:type" }, codes(errs))
    end)

    it("checks UTF-8 and lengths of query strings", function()
      local _, errs = validate.query(list_schema(), { username = "\195" })
      assert.same({ "username:invalid_utf8" }, codes(errs))
      _, errs = validate.query(list_schema(), { username = string.rep("\195\169", 65) })
      assert.same({ "username:too_long" }, codes(errs))
      assert.truthy(validate.query(list_schema(), { username = string.rep("\195\169", 64) }))
    end)
  end)

  describe("form", function()
    it("works like query with in = form", function()
      local schema = { fields = { username = { type = "string", required = true, min_len = 1 },
                                  password = { type = "string", required = true, min_len = 1 } } }
      assert.same({ username = "a", password = "b" }, validate.form(schema, { username = "a", password = "b" }))
      local values, errs = validate.form(schema, { username = "", grant_type = "password" })
      assert.is_nil(values)
      assert.same({ "grant_type:unknown_field", "password:missing", "username:too_short" }, codes(errs))
      assert.equal("Unknown form field 'grant_type'", errs[1].message)
      for _, e in ipairs(errs) do assert.equal("form", e["in"]) end
    end)
  end)
end)
