-- Starts an outbound message (an operator's or a notification) in its conversation: deduplicates
-- by its id (a marker like an inbound message's), lets an operator's message take the
-- conversation over, and reports what the engine needs to decide how to send it.
-- ARGV: 1 outbound id, 2 source (`operator`, `notification`), 3 ttl s, 4 how long an operator
-- keeps the conversation (ms), 5 who (JSON string or '').
-- Returns {code, parts_sent, last_user_ms, owner, language}; code 0 new, 2 started before (resume
-- after parts_sent), 4 already sent; `language` the conversation's (`lg`, see `begin.lua`).
local marker = marker_of(ARGV[1])
local state = redis.call('HMGET', conv, marker, 'lu', 'hu', 'ro', 'lg')
local seen = state[1]
if seen and string.sub(seen, -2) == ':r' then return {4, 0, '', ''} end
local now = now_ms()
local parts = 0
if seen then
  parts = tonumber(string.match(seen, ':(%d+)$') or '0')
else
  redis.call('HSET', conv, marker, '0', 'u', now)
  if redis.call('HEXISTS', conv, 'c') == 0 then redis.call('HSET', conv, 'c', now) end
end
local who = owner(state[2], state[3], now)
local person_until = state[2]
if ARGV[2] == 'operator' and who ~= 'other_app' then
  -- A person answering has the conversation, measured from their last message.
  local info = {reason = 'operator', since = now}
  if ARGV[5] ~= '' then info.by = ARGV[5] end
  if who == 'human' then
    local ok, old = pcall(cjson.decode, redis.call('HGET', conv, 'hi') or '')
    if ok and type(old) == 'table' then info = old end
  end
  person_until = now + tonumber(ARGV[4])
  with_person(person_until, cjson.encode(info))
  who = 'human'
end
local ttl = tonumber(ARGV[3])
keep(conv, ttl, person_until, now)
keep(hist, ttl, person_until, now)
local code = 0
if seen then code = 2 end
return {code, parts, state[2] or '', who, state[5] or ''}
