-- Meta's conversation routing moved the conversation: `ro` (another app owns it) is set or
-- cleared, unless a newer notification was applied already (`rt`, its time in s).
-- ARGV: 1 owned by us (1/0), 2 the notification's time (s), 3 ttl s.
local state = redis.call('HMGET', conv, 'rt', 'hu')
local last = tonumber(state[1] or '0') or 0
local at = tonumber(ARGV[2]) or 0
if at > 0 and at < last then return 0 end
if ARGV[1] == '1' then
  redis.call('HDEL', conv, 'ro')
else
  redis.call('HSET', conv, 'ro', '1')
end
redis.call('HSET', conv, 'rt', at)
keep(conv, tonumber(ARGV[3]), state[2], now_ms())
return 1
