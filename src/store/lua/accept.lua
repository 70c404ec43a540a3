-- Stores one inbound item durably unless it was seen: the dedup marker and the stream entry are
-- written together, so both land in the AOF or neither does.
-- KEYS: seen marker, inbox stream. ARGV: marker TTL s, stored JSON, wamid.
-- Returns the stream id, or false for a duplicate.
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'm', ARGV[2], 'w', ARGV[3])
end
return false
