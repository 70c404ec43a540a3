-- An operator takes a conversation over or gives it back to the bot.
-- ARGV: 1 `take` or `resume`, 2 take: until (ms), 3 take: who and why (JSON), 4 ttl s,
-- 5 take: the `handoff.requested` event's body (JSON), or '' for none.
-- Returns 1 when the conversation exists (a take creates it), 0 otherwise.
local now = now_ms()
local ttl = tonumber(ARGV[4])
if ARGV[1] == 'resume' then
  if redis.call('EXISTS', conv) == 0 then return 0 end
  with_person(nil)
  keep(conv, ttl, nil, now)
  keep(hist, ttl, nil, now)
  return 1
end
local info = cjson.decode(ARGV[3])
info.since = now
with_person(tonumber(ARGV[2]), cjson.encode(info))
if redis.call('HEXISTS', conv, 'c') == 0 then redis.call('HSET', conv, 'c', now, 'u', now) end
keep(conv, ttl, ARGV[2], now)
keep(hist, ttl, ARGV[2], now)
if ARGV[5] and ARGV[5] ~= '' then
  local body = cjson.decode(ARGV[5])
  body.until_ms = tonumber(ARGV[2])
  emit('handoff.requested', body, now)
end
return 1
