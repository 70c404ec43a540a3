-- Records what the bot sent for an inbound message. ARGV: 1 the inbound wamid, 2 ttl s,
-- 3 max history, 4 parts sent so far, 5 `final` (1: the reply is complete; the turns follow)
-- or 0 (progress only: a retry resumes after the parts already sent), 6.. bot turn JSONs.
-- Returns 0 when the reply was already recorded, 1 otherwise.
local marker = marker_of(ARGV[1])
local state = redis.call('HMGET', conv, marker, 'n')
local seen = state[1]
if seen and string.sub(seen, -2) == ':r' then return 0 end
local base = (seen and string.match(seen, '^(%d+)')) or '0'
if ARGV[5] ~= '1' then
  redis.call('HSET', conv, marker, base .. ':' .. ARGV[4])
  redis.call('EXPIRE', conv, tonumber(ARGV[2]))
  return 1
end
local n = tonumber(state[2] or '0') or 0
local turns = {}
for i = 6, #ARGV do turns[#turns + 1] = ARGV[i] end
local len = redis.call('LLEN', hist)
if #turns > 0 then len = redis.call('RPUSH', hist, unpack(turns)) end
redis.call('HSET', conv, marker, base .. ':r', 'n', n + #turns, 'u', now_ms())
trim_and_touch(len, tonumber(ARGV[3]), tonumber(ARGV[2]))
return 1
