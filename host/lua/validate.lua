-- luahost.validate: declarative schemas for query strings, form fields and JSON bodies.
--
-- Owns: the schema shape (check_schema, strict, for the route loader), turning client input into
-- a fresh table of typed values with defaults filled in, and the error list returned to clients
-- (field, in, code, message), plus the UTF-8 helpers those checks need.
--
-- Runs in LuaJIT's interpreter (scripts run with the JIT off), so the hot path avoids closures
-- per call and precomputes per-schema data once: a checked schema is compiled into a "plan"
-- cached in a weak-keyed table, so routes pay the strict check only the first time.

local json = require "luahost.json"

local type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, getmetatable =
  type, pairs, ipairs, tostring, tonumber, pcall, error, setmetatable, getmetatable
local byte, find, format, sub, gsub = string.byte, string.find, string.format, string.sub, string.gsub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local NULL = json.null
-- The decoder marks arrays with the one metatable json.array sets; take it from json.array itself
-- so this module never has to know how the host builds it.
local ARRAY_MT = getmetatable(json.array({}))

-- Integers beyond this are not exact as doubles: the host's one bound (2^53 - 1), from C.
local MAX_SAFE_INT = json.max_safe_integer
-- Longest field name echoed back in an error: client-chosen names must not bloat responses.
local MAX_ECHO_NAME = 100

local _M = {}

-- ---------------------------------------------------------------------------------------------
-- UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF)

-- The number of code points, or nil when s is not valid UTF-8: the host's one validator (C).
local utf8_count = json.utf8_len

-- validate.is_valid_utf8(s) -> boolean
function _M.is_valid_utf8(s)
  if type(s) ~= "string" then error("is_valid_utf8: expected a string, got " .. type(s), 2) end
  return utf8_count(s) ~= nil
end

-- validate.utf8_len(s) -> number of characters | nil when s is not valid UTF-8
function _M.utf8_len(s)
  if type(s) ~= "string" then error("utf8_len: expected a string, got " .. type(s), 2) end
  return utf8_count(s)
end

-- ---------------------------------------------------------------------------------------------
-- Small helpers

local CONTROL = "[%z\1-\31\127]"

-- Keys that could reach MongoDB as operators or dotted paths, or be cut short by C strings.
local function is_bad_key(k)
  return type(k) ~= "string" or k == "" or byte(k, 1) == 36 --[[ "$" ]]
      or find(k, ".", 1, true) ~= nil or find(k, CONTROL) ~= nil or utf8_count(k) == nil
end

-- A client-sent name made safe to echo in JSON: valid UTF-8, no control characters, bounded.
local function echo_name(k)
  if type(k) ~= "string" then return tostring(k) end
  if #k <= MAX_ECHO_NAME and not find(k, CONTROL) and utf8_count(k) then return k end
  return (sub(gsub(k, "[%z\1-\31\127-\255]", "?"), 1, MAX_ECHO_NAME))
end

local function fmt_num(n)
  if n == floor(n) and n >= -MAX_SAFE_INT and n <= MAX_SAFE_INT then return format("%d", n) end
  return format("%.14g", n)
end

local function is_array(v)
  return type(v) == "table" and getmetatable(v) == ARRAY_MT
end

local function is_finite(n)
  return n == n and n ~= huge and n ~= -huge
end

local function is_int(n)
  return type(n) == "number" and is_finite(n) and n == floor(n)
end

local function is_sequence(t)
  if type(t) ~= "table" then return false end
  local n = #t
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then return false end
  end
  return n > 0
end

local function plural(n, word)
  return fmt_num(n) .. " " .. word .. (n == 1 and "" or "s")
end

-- ---------------------------------------------------------------------------------------------
-- Messages: written once per field at compile time, so a failing request only indexes strings.

local function range_text(lo, hi)
  if lo and hi then return " between " .. fmt_num(lo) .. " and " .. fmt_num(hi) end
  if lo then return " greater than or equal to " .. fmt_num(lo) end
  if hi then return " less than or equal to " .. fmt_num(hi) end
  return ""
end

local function length_text(lo, hi)
  if lo and hi then
    if lo == hi then return "exactly " .. plural(lo, "character") end
    return fmt_num(lo) .. " to " .. fmt_num(hi) .. " characters"
  end
  if lo then return "at least " .. plural(lo, "character") end
  if hi then return "at most " .. plural(hi, "character") end
  return nil
end

local function enum_text(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = tostring(v) end
  return concat(parts, ", ")
end

-- The sentence a client reads when the value has the wrong type or falls outside the range.
local function describe(name, f)
  if f.enum then return name .. " must be one of: " .. enum_text(f.enum) end
  if f.type == "integer" then return name .. " must be an integer" .. range_text(f.min, f.max) end
  if f.type == "number" then return name .. " must be a number" .. range_text(f.min, f.max) end
  if f.type == "boolean" then return name .. " must be true or false" end
  local len = length_text(f.min_len, f.max_len)
  return name .. " must be a string" .. (len and (" of " .. len) or "")
end

-- ---------------------------------------------------------------------------------------------
-- Schema shape

local TYPES = { string = true, integer = true, number = true, boolean = true }
local SCHEMA_KEYS = { fields = true, additional = true, check = true }
-- Each field key, with the field types it applies to (true: all types).
local FIELD_KEYS = {
  type = true, required = true, default = true, enum = true, check = true,
  min = { integer = true, number = true }, max = { integer = true, number = true },
  min_len = { string = true }, max_len = { string = true },
  no_control = { string = true }, pattern = { string = true },
}

local function value_has_type(v, t)
  if t == "string" then return type(v) == "string" end
  if t == "boolean" then return type(v) == "boolean" end
  if t == "integer" then return is_int(v) and v >= -MAX_SAFE_INT and v <= MAX_SAFE_INT end
  return type(v) == "number" and is_finite(v)
end

-- A Lua pattern that must match the whole string: strip the operator's own anchors, add ours.
-- Lua patterns have no alternation, so "^" .. p .. "$" anchors every part of p.
local function anchor(p)
  if byte(p, 1) == 94 --[[ "^" ]] then p = sub(p, 2) end
  -- A final "$" is an anchor unless escaped: an odd run of "%" before it makes it a literal.
  local pct = p:match("(%%*)%$$")
  if pct and #pct % 2 == 0 then p = sub(p, 1, -2) end
  return "^" .. p .. "$"
end

-- Why a pattern is malformed (or uses back-references, which a whole-string check has no use
-- for), or nil. The host's one reader of Lua patterns decides (host/pattern.c).
local pattern_problem = require("luahost.pattern").problem

-- Checks value v (already of the field's type) against the constraints; appends errors to errs
-- through add(field, code, message). Returns true when nothing was added.
local function check_value(name, f, v, add)
  local ok = true
  if f.type == "string" then
    local n = utf8_count(v)
    if not n then
      add(name, "invalid_utf8", name .. " must be valid UTF-8 text")
      return false                      -- lengths and patterns mean nothing on broken text
    end
    if f.enum_set then
      if not f.enum_set[v] then add(name, "not_allowed", f.type_msg) return false end
    else
      if f.no_control and find(v, CONTROL) then
        add(name, "control_characters", name .. " must not contain control characters")
        ok = false
      end
      if f.min_len and n < f.min_len then add(name, "too_short", f.len_msg) ok = false end
      if f.max_len and n > f.max_len then add(name, "too_long", f.len_msg) ok = false end
      if f.anchored and not find(v, f.anchored) then
        add(name, "pattern", name .. " has an invalid format")
        ok = false
      end
    end
  elseif f.enum_set then
    if not f.enum_set[v] then add(name, "not_allowed", f.type_msg) return false end
  elseif f.type ~= "boolean" then
    if f.min and v < f.min then add(name, "too_small", f.type_msg) ok = false end
    if f.max and v > f.max then add(name, "too_large", f.type_msg) ok = false end
  end
  -- The field's own rule only sees values that passed everything else.
  if ok and f.check then
    local pass, code, message = f.check(v)
    if not pass then
      if code ~= nil and type(code) ~= "string" then
        error("check of field '" .. name .. "' returned a non-string code", 0)
      end
      add(name, code or "invalid",
          type(message) == "string" and message or (name .. " is invalid"))
      ok = false
    end
  end
  return ok
end

-- Builds the compiled form of one field, or returns nil, message.
local function compile_field(name, spec)
  local where = "field '" .. echo_name(name) .. "': "
  if type(spec) ~= "table" then return nil, where .. "must be a table" end
  if getmetatable(spec) ~= nil then return nil, where .. "must be a plain table" end
  local t = spec.type
  if t == nil then return nil, where .. "missing key 'type'" end
  if not TYPES[t] then
    return nil, where .. "'type' must be one of string, integer, number, boolean"
  end
  for k in pairs(spec) do
    local applies = FIELD_KEYS[k]
    if applies == nil then return nil, where .. "unknown key '" .. echo_name(k) .. "'" end
    if applies ~= true and not applies[t] then
      return nil, where .. "key '" .. k .. "' does not apply to type '" .. t .. "'"
    end
  end

  local f = { name = name, type = t }
  for _, k in ipairs { "required", "no_control" } do
    if spec[k] ~= nil and type(spec[k]) ~= "boolean" then
      return nil, where .. "'" .. k .. "' must be a boolean"
    end
    f[k] = spec[k] or nil
  end
  for _, k in ipairs { "min", "max" } do
    local v = spec[k]
    if v ~= nil then
      if not value_has_type(v, t) then
        return nil, where .. "'" .. k .. "' must be " .. (t == "integer" and "an integer" or "a finite number")
      end
      f[k] = v
    end
  end
  if f.min and f.max and f.min > f.max then return nil, where .. "'min' is greater than 'max'" end
  for _, k in ipairs { "min_len", "max_len" } do
    local v = spec[k]
    if v ~= nil then
      if not is_int(v) or v < 0 then return nil, where .. "'" .. k .. "' must be a non-negative integer" end
      f[k] = v
    end
  end
  if f.min_len and f.max_len and f.min_len > f.max_len then
    return nil, where .. "'min_len' is greater than 'max_len'"
  end
  if spec.pattern ~= nil then
    local p = spec.pattern
    if type(p) ~= "string" or p == "" then return nil, where .. "'pattern' must be a non-empty string" end
    local problem = pattern_problem(p)
    if problem then return nil, where .. "'pattern' is not a valid Lua pattern: " .. problem end
    local anchored = anchor(p)
    local ok, err = pcall(find, "", anchored)
    if not ok then return nil, where .. "'pattern' is not a valid Lua pattern: " .. tostring(err) end
    f.anchored = anchored
  end
  if spec.check ~= nil then
    if type(spec.check) ~= "function" then return nil, where .. "'check' must be a function" end
    f.check = spec.check
  end
  if spec.enum ~= nil then
    if not is_sequence(spec.enum) then return nil, where .. "'enum' must be a non-empty list" end
    local set = {}
    for i, v in ipairs(spec.enum) do
      if not value_has_type(v, t) then
        return nil, where .. "enum value " .. i .. " is not of type '" .. t .. "'"
      end
      if set[v] then return nil, where .. "enum value '" .. tostring(v) .. "' is listed twice" end
      set[v] = true
    end
    f.enum, f.enum_set = spec.enum, set
  end
  f.type_msg = describe(name, f)
  f.len_msg = name .. " must be " .. (length_text(f.min_len, f.max_len) or "")
  f.null_msg = f.type_msg .. " (omit the field instead of sending null)"

  if spec.default ~= nil then
    if f.required then return nil, where .. "a required field cannot have a default" end
    if not value_has_type(spec.default, t) then
      return nil, where .. "'default' is not of type '" .. t .. "'"
    end
    -- The default must pass the field's own rules, or a client omitting it gets a bad value.
    local problems = {}
    local ok, err = pcall(check_value, name, f, spec.default, function(_, _, message)
      problems[#problems + 1] = message
    end)
    if not ok then return nil, where .. "checking 'default' raised: " .. tostring(err) end
    if #problems > 0 then return nil, where .. "'default' does not validate: " .. problems[1] end
    f.default = spec.default
  end
  return f
end

-- Weak keys: a schema dropped with its generation frees its plan too.
local plans = setmetatable({}, { __mode = "k" })

local function compile(schema)
  if type(schema) ~= "table" then return nil, "schema must be a table" end
  for k in pairs(schema) do
    if not SCHEMA_KEYS[k] then return nil, "schema: unknown key '" .. echo_name(k) .. "'" end
  end
  local fields = schema.fields
  if type(fields) ~= "table" then return nil, "schema: 'fields' must be a table" end
  if getmetatable(fields) ~= nil then return nil, "schema: 'fields' must be a plain table" end
  if schema.additional ~= nil and type(schema.additional) ~= "boolean" then
    return nil, "schema: 'additional' must be a boolean"
  end
  if schema.check ~= nil and type(schema.check) ~= "function" then
    return nil, "schema: 'check' must be a function"
  end
  local plan = { additional = schema.additional == true, check = schema.check,
                 fields = {}, names = {} }
  for name, spec in pairs(fields) do
    -- A name no client may send could never be filled: reject it here, not per request.
    if is_bad_key(name) then
      return nil, "schema: invalid field name '" .. echo_name(name) ..
        "' (must be a non-empty string without '$' at the start, '.', or control characters)"
    end
    local f, err = compile_field(name, spec)
    if not f then return nil, err end
    plan.fields[name] = f
    plan.names[#plan.names + 1] = name
  end
  sort(plan.names)
  return plan
end

-- validate.check_schema(schema) -> true | nil, message
function _M.check_schema(schema)
  if plans[schema] then return true end
  local plan, err = compile(schema)
  if not plan then return nil, err end
  plans[schema] = plan
  return true
end

-- A schema that was never checked is a caller mistake: raise, as for a bad argument.
local function plan_for(schema, level)
  local plan = plans[schema]
  if plan then return plan end
  local err
  plan, err = compile(schema)
  if not plan then error("invalid schema: " .. err, level + 1) end
  plans[schema] = plan
  return plan
end

-- ---------------------------------------------------------------------------------------------
-- Type conversion: returns the typed value, or nil, message for a "type" error.

local function from_json(f, v)
  if v == NULL then return nil, f.null_msg end
  if value_has_type(v, f.type) then
    if f.type == "integer" and v == 0 then return 0 end   -- fold -0 into 0
    return v
  end
  return nil, f.type_msg
end

local function from_text(f, s)
  if type(s) ~= "string" then return nil, f.name .. " must be given once, as a single value" end
  local t = f.type
  if t == "string" then return s end
  if t == "integer" then
    -- Digits only (leading zeros fine), at most 15 so every value is exact as a double.
    if not find(s, "^%-?%d+$") then return nil, f.type_msg end
    if #s - (byte(s, 1) == 45 and 1 or 0) > 15 then return nil, f.type_msg end
    return tonumber(s) + 0                                 -- "+ 0" folds -0 into 0
  end
  if t == "number" then
    -- Plain decimals only: tonumber alone would take "0x10", "1e3", " 5" and "inf".
    if #s > 32 or not (find(s, "^%-?%d+$") or find(s, "^%-?%d+%.%d+$")) then
      return nil, f.type_msg
    end
    return tonumber(s) + 0
  end
  if s == "true" or s == "1" then return true end
  if s == "false" or s == "0" then return false end
  return nil, f.type_msg
end

-- ---------------------------------------------------------------------------------------------
-- Running a schema

local function by_field_then_code(a, b)
  if a.field ~= b.field then return a.field < b.field end
  if a.code ~= b.code then return a.code < b.code end
  return a.message < b.message
end

local function run(plan, input, where, convert, unknown_word)
  local values, errors = {}, {}
  local function add(field, code, message)
    errors[#errors + 1] = { field = field, ["in"] = where, code = code, message = message }
  end

  -- Input keys first: bad names are refused even when unknown fields are allowed.
  local fields = plan.fields
  for k, v in pairs(input) do
    if is_bad_key(k) then
      add(echo_name(k), "invalid_key",
          "Field name '" .. echo_name(k) .. "' is not allowed")
    elseif not fields[k] then
      if plan.additional then
        values[k] = v
      else
        add(echo_name(k), "unknown_field", "Unknown " .. unknown_word .. " '" .. echo_name(k) .. "'")
      end
    end
  end

  local names = plan.names
  for i = 1, #names do
    local name = names[i]
    local f = fields[name]
    local raw = input[name]
    if raw == nil then
      if f.required then
        add(name, "missing", name .. " is required")
      elseif f.default ~= nil then
        values[name] = f.default
      end
    else
      local v, message = convert(f, raw)
      if v == nil then
        add(name, "type", message)
      elseif check_value(name, f, v, add) then
        values[name] = v
      end
    end
  end

  -- The cross-field rule sees only complete, well-typed values.
  if #errors == 0 and plan.check then
    local ok, field, code, message = plan.check(values)
    if not ok then
      if field ~= nil and type(field) ~= "string" then
        error("schema check returned a non-string field", 0)
      end
      if code ~= nil and type(code) ~= "string" then
        error("schema check returned a non-string code", 0)
      end
      add(field or "", code or "invalid",
          type(message) == "string" and message or "The request is invalid")
    end
  end

  if #errors > 0 then
    sort(errors, by_field_then_code)
    return nil, errors
  end
  return values
end

-- validate.body(schema, value) -> values | nil, errors
function _M.body(schema, value)
  local plan = plan_for(schema, 2)
  if type(value) ~= "table" or value == NULL or is_array(value) then
    return nil, { { field = "", ["in"] = "body", code = "type",
                    message = "Request body must be a JSON object" } }
  end
  return run(plan, value, "body", from_json, "field")
end

local function text_input(schema, args, where, word)
  local plan = plan_for(schema, 3)
  if type(args) ~= "table" then
    error(where .. ": expected a table of arguments, got " .. type(args), 3)
  end
  return run(plan, args, where, from_text, word)
end

-- validate.query(schema, args) -> values | nil, errors
function _M.query(schema, args)
  return text_input(schema, args, "query", "query parameter")
end

-- validate.form(schema, args) -> values | nil, errors
function _M.form(schema, args)
  return text_input(schema, args, "form", "form field")
end

return _M
