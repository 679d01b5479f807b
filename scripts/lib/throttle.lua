-- lib/throttle.lua: brute-force defence for POST /login.
--
-- Owns: which failed logins are counted and when a login is refused. Failures are counted in three
-- fixed windows (luahost.ratelimit, shared by every worker of the process):
--   per (client address, username)  guessing one account from one place   (default 5)
--   per username                    one account from many places          (default 20)
--   per client address              many accounts from one place          (default 100)
-- Once any counter reaches its limit, further attempts get 429 with Retry-After before a hash is
-- computed, so a flood costs the attacker a round trip and the server nothing. Only failures
-- count: an office behind one address logging in all day is never locked out, and a success
-- clears its own (address, username) counter. The username counter is deliberately not cleared
-- by a success, or an attacker who knows one valid login could reset a victim's counter.
--
-- The check and the count are two steps, so a burst of concurrent wrong guesses can overshoot a
-- limit by the number of requests in flight (bounded by the hashing queue); the next window then
-- starts refused. That is the price of not counting successes.

local ratelimit = require "luahost.ratelimit"
local config = require "lib.settings"

local M = {}

-- The ratelimit store caps key lengths; a long username is cut, which at worst makes two very
-- long names that share a prefix share a counter (stricter, never looser).
local MAX_NAME_IN_KEY = 128

-- The limits, from the one place that owns their defaults and ranges (lib/settings.lua).
local function settings()
  return config.get("login_max_per_pair"), config.get("login_max_per_user"),
         config.get("login_max_per_addr"), config.get("login_window_s")
end

-- The three counter keys. The address comes first and never contains "|", so the pair key is
-- unambiguous whatever the username holds. username_lc: the lower-cased name, so "Alice" and
-- "alice" share counters just as they share an account.
function M.keys(username_lc, addr)
  local name = username_lc:sub(1, MAX_NAME_IN_KEY)
  if addr == nil or addr == "" then addr = "-" end
  return "login:pair:" .. addr .. "|" .. name, "login:user:" .. name, "login:addr:" .. addr
end

-- check(username_lc, addr) -> true | false, retry_after_s
function M.check(username_lc, addr)
  local pair_max, user_max, addr_max = settings()
  local pk, uk, ak = M.keys(username_lc, addr)
  local limits = { { pk, pair_max }, { uk, user_max }, { ak, addr_max } }
  local refused, retry = false, 0
  for _, l in ipairs(limits) do
    local n, after = ratelimit.count(l[1])
    if n >= l[2] then
      refused = true
      if after > retry then retry = after end
    end
  end
  if refused then return false, math.max(retry, 1) end
  return true
end

-- failed(username_lc, addr): counts one failed attempt in all three windows.
function M.failed(username_lc, addr)
  local _, _, _, window = settings()
  local pk, uk, ak = M.keys(username_lc, addr)
  ratelimit.incr(pk, window)
  ratelimit.incr(uk, window)
  ratelimit.incr(ak, window)
end

-- succeeded(username_lc, addr): forgives this address's earlier mistakes on this account.
function M.succeeded(username_lc, addr)
  local pk = M.keys(username_lc, addr)
  ratelimit.reset(pk)
end

return M
