-- Stores one inbound item durably unless it was seen: the dedup marker and the stream entry are
-- written together, so both land in the AOF or neither does.
-- KEYS: seen marker, inbox stream; for an echo of what the business typed in the WhatsApp
-- Business app, also its conversation's hash and history and the partition's set of
-- conversations a person has.
-- ARGV: marker TTL s, stored JSON, wamid, the W3C traceparent of the webhook's trace (stored
-- as field `tp`; empty while tracing is off: no field); for an echo, the bot's pause (ms) and the
-- conversation TTL (s).
-- Returns the stream id, or false for a duplicate.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local id
if ARGV[4] and ARGV[4] ~= '' then
  id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3], 'tp', ARGV[4])
else
  id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3])
end
if KEYS[3] and tonumber(ARGV[5]) > 0 then
  -- A person of the business answered from the phone: the bot steps back at once (before the
  -- echo's turn is processed), so a reply still being prepared is not sent. An echo of a
  -- message wabot sent itself never does this.
  local ours = find_turn(redis.call('LRANGE', KEYS[4], 0, -1), ARGV[3]) ~= nil
  if not ours and (redis.call('HGET', KEYS[3], 'ro') or '') == '' then
    local now = now_ms()
    local until_ms = now + tonumber(ARGV[5])
    if (tonumber(redis.call('HGET', KEYS[3], 'hu') or '0') or 0) < until_ms then
      redis.call('HSET', KEYS[3], 'hu', until_ms,
        'hi', cjson.encode({reason = 'echo', by = 'whatsapp_business_app', since = now}))
      redis.call('ZADD', KEYS[5], until_ms, string.match(KEYS[3], '}:conv:(.+)$'))
      keep(KEYS[3], tonumber(ARGV[6]), until_ms, now)
      keep(KEYS[4], tonumber(ARGV[6]), until_ms, now)
    end
  end
end
return id
