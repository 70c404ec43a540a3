-- Records what the bot sent for an inbound message. ARGV: 1 the inbound wamid, 2 ttl s,
-- 3 max history, 4 parts sent so far, 5 `final` (1: the reply is complete; the turns follow)
-- or 0 (progress only: a retry resumes after the parts already sent), 6 now (ms, the worker's
-- clock: informational `u`, so no TIME here), 7 the menu the reply ends with (`mo`, JSON;
-- empty: the last one stays), 8 a language the user chose by answering the language menu
-- (`lg`; empty: none), 9.. bot turn JSONs.
-- Returns 0 when the reply was already recorded, 1 otherwise.
-- `begin.lua` refreshed both keys' TTL moments ago and HSET/RPUSH keep a key's TTL, so only a
-- key created here (expired or reset meanwhile) needs one: two EXPIREs saved per message.
local marker = marker_of(ARGV[1])
local ttl = tonumber(ARGV[2])
local state = redis.call('HMGET', conv, marker, 'n')
local seen = state[1]
if seen and string.sub(seen, -2) == ':r' then return 0 end
local base = (seen and string.match(seen, '^(%d+)')) or '0'
if ARGV[5] ~= '1' then
  redis.call('HSET', conv, marker, base .. ':' .. ARGV[4])
  if not state[2] then redis.call('EXPIRE', conv, ttl) end
  return 1
end
local n = tonumber(state[2] or '0') or 0
local turns = {}
for i = 9, #ARGV do turns[#turns + 1] = ARGV[i] end
local fields = {marker, base .. ':r', 'n', n + #turns, 'u', ARGV[6]}
if ARGV[7] ~= "" then fields[#fields + 1] = 'mo'; fields[#fields + 1] = ARGV[7] end
if ARGV[8] ~= "" then fields[#fields + 1] = 'lg'; fields[#fields + 1] = ARGV[8] .. ':u' end
redis.call('HSET', conv, unpack(fields))
if not state[2] then redis.call('EXPIRE', conv, ttl) end
if #turns > 0 then
  local len = redis.call('RPUSH', hist, unpack(turns))
  if len == #turns then redis.call('EXPIRE', hist, ttl) end
  trim(len, tonumber(ARGV[3]))
end
return 1
