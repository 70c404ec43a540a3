-- Reserves the send slot of one outbound message, shared by every replica: a GCRA per business
-- number (throughput) and one per recipient (Meta's pair rate limit: bursts borrow from the
-- future). Times are microseconds (Redis TIME has them): a whole-millisecond interval would
-- turn 300/s into 250/s and cap every rate at 1,000/s.
-- KEYS: number, pair. ARGV: number interval us, number tolerance us, pair interval us, pair
-- tolerance us, then penalties us for the number and the pair (Meta answered 130429 or 131056:
-- push that limiter back instead of reserving).
-- Returns how many us to wait before sending (0: now).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function tat_of(key)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then return now end
  return tat
end
-- The key lives as long as its state matters, plus a second.
local function store(key, tat)
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local number_penalty, pair_penalty = tonumber(ARGV[5]), tonumber(ARGV[6])
local ni, nt, pi, pt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local number_tat, pair_tat = tat_of(KEYS[1]), tat_of(KEYS[2])
if number_penalty > 0 or pair_penalty > 0 then
  if number_penalty > 0 then store(KEYS[1], math.max(number_tat, now + number_penalty)) end
  if pair_penalty > 0 then store(KEYS[2], math.max(pair_tat, now + pair_penalty)) end
  return 0
end
-- The earliest moment both allow: GCRA admits at `at` when tat - at <= tolerance.
local at = now
if ni > 0 then at = math.max(at, number_tat - nt) end
if pi > 0 then at = math.max(at, pair_tat - pt) end
if ni > 0 then store(KEYS[1], math.max(number_tat, at) + ni) end
if pi > 0 then store(KEYS[2], math.max(pair_tat, at) + pi) end
return math.ceil(at - now)
