-- Redis's clock and the conversations' sliding TTL, shared by the conversation scripts and
-- `accept.lua` (an echo's pause).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Restarts `key`'s sliding TTL (`ttl` s), never shorter than a person keeps the conversation
-- (`hu`, ms): a handoff longer than SESSION_EXPIRE_TIME must not expire with an idle
-- conversation, or the bot would answer the next message in the middle of a person's work.
local function keep(key, ttl, hu, now)
  local until_ms = tonumber(hu or '')
  if until_ms and until_ms - now > ttl * 1000 then
    redis.call('PEXPIREAT', key, until_ms)
  else
    redis.call('EXPIRE', key, ttl)
  end
end
