-- What a voice note said, once it was admitted and transcribed: its turn gets the transcript
-- (so a retry finds it instead of paying for another transcription, and operators read it), the
-- language it gives away is claimed as a typed message's would be, and a spoken request for a
-- person hands the conversation over as a typed one does in `begin.lua`.
-- ARGV: 1 the voice note's wamid, 2 its turn's new text, 3 the language it gives away ('' none),
-- 4 `chosen` or '', 5 handoff: until (ms; '' for none), 6 handoff: the message for the
-- `handoff.requested` event (JSON), 7 ttl s.
-- Returns the conversation's language (`lg`, as `begin.lua` returns it).
local now = now_ms()
local state = redis.call('HMGET', conv, 'lg', 'hu')
local language = state[1] or ''
local index, turn = find_turn(redis.call('LRANGE', hist, 0, -1), ARGV[1])
if index then
  turn[4] = ARGV[2]
  redis.call('LSET', hist, index - 1, encode_turn(turn))
end
local new = language_after(language, ARGV[3], ARGV[4] == 'chosen')
if new then
  language = new
  redis.call('HSET', conv, 'lg', new)
end
if ARGV[5] ~= '' then
  local until_ms = tonumber(ARGV[5])
  with_person(until_ms, cjson.encode({reason = 'requested', by = 'user', since = now}))
  local ttl = tonumber(ARGV[7])
  keep(conv, ttl, until_ms, now)
  keep(hist, ttl, until_ms, now)
  local ok, message = pcall(cjson.decode, ARGV[6])
  if not (ok and type(message) == 'table') then message = {} end
  emit('handoff.requested', {message = message, until_ms = until_ms}, now)
end
return language
