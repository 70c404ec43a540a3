-- Stores one inbound item durably unless it was seen: the dedup marker and the stream entry are
-- written together, so both land in the AOF or neither does.
-- KEYS: seen marker, inbox stream. ARGV: marker TTL s, stored JSON, wamid, and optionally the
-- W3C traceparent of the webhook's trace (stored as field `tp`; absent or empty: no field).
-- Returns the stream id, or false for a duplicate.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  if ARGV[4] and ARGV[4] ~= '' then
    return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3], 'tp', ARGV[4])
  end
  return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3])
end
return false
