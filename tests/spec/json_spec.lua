-- json_spec.lua: the Lua API of `luahost.json`, against the real C implementation built as
-- build*/lua/luahost/json.so. Run from the repository root:
--   LUA_CPATH="build/lua/?.so;;" luajit /usr/bin/busted tests/spec/json_spec.lua
local json = require "luahost.json"

describe("luahost.json", function()
  describe("module", function()
    it("is created once per state", function()
      assert.are.equal(json, require "luahost.json")
      package.loaded["luahost.json"] = nil
      assert.are.equal(json, require "luahost.json")
    end)

    it("exposes null as the NULL light userdata", function()
      assert.are.equal("userdata", type(json.null))
      assert.are.equal("null", json.encode(json.null))
    end)
  end)

  describe("encode", function()
    it("writes objects with sorted keys", function()
      assert.are.equal('{"a":1,"b":"x","c":true}', json.encode({ c = true, b = "x", a = 1 }))
    end)

    it("keeps an empty array an array and an empty table an object", function()
      assert.are.equal("[]", json.encode(json.array()))
      assert.are.equal("{}", json.encode({}))
      assert.are.equal('{"items":[]}', json.encode({ items = json.array({}) }))
    end)

    it("writes sequences as arrays, with null inside", function()
      assert.are.equal('[1,null,"x"]', json.encode(json.array({ 1, json.null, "x" })))
      assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
    end)

    it("writes integers without a fraction and other numbers exactly", function()
      assert.are.equal("[42,-7,0.1,1.5,1e+300]", json.encode({ 42, -7, 0.1, 1.5, 1e300 }))
    end)

    it("escapes strings", function()
      assert.are.equal('"a\\"b\\\\c\\n\\u0001"', json.encode('a"b\\c\n\1'))
      assert.are.equal('"\226\130\172"', json.encode("\226\130\172"))
    end)

    it("raises on values without a JSON form, naming where they are", function()
      assert.has_error(function() json.encode(0 / 0) end, "json.encode: cannot encode NaN")
      assert.has_error(function() json.encode({ a = { 1 / 0 } }) end,
        "json.encode: cannot encode Infinity at a[1]")
      assert.has_error(function() json.encode({ f = print }) end,
        "json.encode: cannot encode a function at f")
      assert.has_error(function() json.encode({ 1, x = 2 }) end)
      assert.has_error(function() json.encode() end)
    end)

    it("raises on cycles", function()
      local t = {}
      t.self = t
      local ok, err = pcall(json.encode, t)
      assert.is_false(ok)
      assert.matches("nesting too deep or cyclic", err)
    end)
  end)

  describe("decode", function()
    it("returns objects, arrays and scalars", function()
      local v = json.decode('{"name":"ana","tags":["a","b"],"age":30,"ok":true,"x":null}')
      assert.are.equal("ana", v.name)
      assert.are.same({ "a", "b" }, v.tags)
      assert.is_true(json.is_array(v.tags))
      assert.is_false(json.is_array(v))
      assert.are.equal(30, v.age)
      assert.is_true(v.ok)
      assert.are.equal(json.null, v.x)
      assert.are.equal("s", json.decode('"s"'))
    end)

    it("round-trips empty arrays and objects", function()
      assert.are.equal('{"a":[],"b":{}}', json.encode(json.decode('{"b":{},"a":[]}')))
    end)

    it("returns nil and a reason for bad input", function()
      local cases = {
        { '{"a":1,"a":2}', "duplicate object key 'a'" },
        { "NaN", "invalid JSON" },
        { "[1] x", "end of file expected" },
        { "", "empty input" },
        { '"\\u0000"', "\\u0000 is not allowed" },
        { "\"\255\"", "unable to decode byte 0xff" },
        { string.rep("[", 65) .. string.rep("]", 65), "JSON nesting deeper than 64 levels" },
        { string.rep("[", 100000), "JSON nesting deeper than 64 levels" },
        { "9007199254740993", "outside the exactly representable range" },
      }
      for _, case in ipairs(cases) do
        local v, err = json.decode(case[1])
        assert.is_nil(v)
        assert.is_truthy(err:find(case[2], 1, true), err)
      end
    end)

    it("raises when not given a string", function()
      assert.has_error(function() json.decode({}) end)
    end)
  end)

  describe("array and is_array", function()
    it("marks a given table and returns it", function()
      local t = { 1, 2 }
      assert.are.equal(t, json.array(t))
      assert.is_true(json.is_array(t))
    end)

    it("creates a new table when given nothing", function()
      local t = json.array()
      assert.are.equal("table", type(t))
      assert.is_true(json.is_array(t))
    end)

    it("says false for non-tables and plain tables", function()
      assert.is_false(json.is_array({}))
      assert.is_false(json.is_array("x"))
      assert.is_false(json.is_array(nil))
    end)

    it("raises for a non-table argument", function()
      assert.has_error(function() json.array("x") end)
    end)
  end)

  describe("utf8_valid, utf8_len and max_safe_integer", function()
    it("accepts well-formed UTF-8 and counts code points", function()
      assert.is_true(json.utf8_valid(""))
      assert.is_true(json.utf8_valid("caf\195\169 \240\159\152\128"))
      assert.are.equal(6, json.utf8_len("caf\195\169 \240\159\152\128"))
      assert.are.equal(3, json.utf8_len("abc"))
    end)

    it("refuses overlong forms, surrogates, stray and truncated bytes", function()
      for _, s in ipairs({ "\192\128", "\224\128\128", "\237\160\128", "\128", "\226\130",
                           "\244\144\128\128", "\255" }) do
        assert.is_false(json.utf8_valid(s))
        assert.is_nil(json.utf8_len(s))
      end
    end)

    it("raises for a non-string argument", function()
      assert.has_error(function() json.utf8_valid({}) end)
    end)

    it("exports the one safe-integer bound, 2^53 - 1", function()
      assert.are.equal(2 ^ 53 - 1, json.max_safe_integer)
    end)
  end)
end)
