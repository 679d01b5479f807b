-- lib/password_rules.lua (examples/password-rules): custom validation rules for passwords.
--
-- A schema field may carry `check = function(value) -> true | false, code, message`: it runs
-- after the field's type, length and pattern passed. A schema may carry `check = function(values)
-- -> true | false, field, code, message`: it runs once every field is valid, so it can compare
-- fields. A failing rule becomes one entry of the 422's errors list ({field, in, code, message}),
-- like the built-in ones. (host/lua/validate.lua, docs/lua-api.md.)
--
-- scripts.patch wires both into lib/schemas.lua: every new or changed password must hold a letter
-- and a digit, and a new account's password must not contain its username. Logins are not
-- affected (lib/schemas.lua's login_form has no such rules): an account made before the rules
-- still logs in.
local M = {}

-- Field rule: at least one letter and one digit (ASCII or not: any byte >= 0x80 counts as a letter).
function M.letter_and_digit(pw)
  if not pw:find("[%a\128-\255]") or not pw:find("%d") then
    return false, "letter_and_digit", "password must contain at least one letter and one digit"
  end
  return true
end

-- Schema rule for bodies with both fields: the password must not contain the username, in any
-- case (ASCII case folding; a username of fewer than 3 characters is not looked for).
function M.not_the_username(values)
  local name, pw = values.username, values.password
  if type(name) == "string" and type(pw) == "string" and #name >= 3
      and pw:lower():find(name:lower(), 1, true) then
    return false, "password", "contains_username", "password must not contain the username"
  end
  return true
end

return M
