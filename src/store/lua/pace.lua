-- Reserves the send slot of one outbound message, shared by every replica: a GCRA per business
-- number (throughput) and one per recipient (Meta's pair rate limit: bursts borrow from the
-- future). KEYS: number, pair. ARGV: number interval ms, number tolerance ms, pair interval ms,
-- pair tolerance ms, then penalties ms for the number and the pair (Meta answered 130429 or
-- 131056: push that limiter back instead of reserving).
-- Returns how many ms to wait before sending (0: now).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function tat_of(key)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then return now end
  return tat
end
local number_penalty, pair_penalty = tonumber(ARGV[5]), tonumber(ARGV[6])
local ni, nt, pi, pt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local number_tat, pair_tat = tat_of(KEYS[1]), tat_of(KEYS[2])
if number_penalty > 0 or pair_penalty > 0 then
  if number_penalty > 0 then
    number_tat = math.max(number_tat, now + number_penalty)
    redis.call('SET', KEYS[1], number_tat, 'PX', math.ceil(number_tat - now) + 1000)
  end
  if pair_penalty > 0 then
    pair_tat = math.max(pair_tat, now + pair_penalty)
    redis.call('SET', KEYS[2], pair_tat, 'PX', math.ceil(pair_tat - now) + 1000)
  end
  return 0
end
-- The earliest moment both allow: GCRA admits at `at` when tat - at <= tolerance.
local at = now
if ni > 0 then at = math.max(at, number_tat - nt) end
if pi > 0 then at = math.max(at, pair_tat - pt) end
if ni > 0 then
  local next_tat = math.max(number_tat, at) + ni
  redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
end
if pi > 0 then
  local next_tat = math.max(pair_tat, at) + pi
  redis.call('SET', KEYS[2], next_tat, 'PX', math.ceil(next_tat - now) + 1000)
end
return math.ceil(at - now)
