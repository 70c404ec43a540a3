-- KEYS: lease, inbox, dead, start counts (`starts.lua`). ARGV: token, group, lease ttl ms, then
-- either `ack` and the entry ids (none: only the lease is checked), `ack_replayed` and the ids
-- (the same, and their start counts are forgotten), or `dead` and the entry id, stored JSON,
-- error, attempts, time ms. Acknowledges and deletes the entries (a dead letter after copying it to
-- the dead-letter stream, which keeps about the newest 100,000) while we hold the partition, so
-- the inbox only holds unfinished work.
if not hold_lease(ARGV[1], ARGV[3]) then return 0 end
if ARGV[4] == 'dead' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'm', ARGV[6], 'error', ARGV[7],
    'attempts', ARGV[8], 'failed_at', ARGV[9], 'source', ARGV[5])
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[5])
  redis.call('XDEL', KEYS[2], ARGV[5])
  redis.call('HDEL', KEYS[4], ARGV[5])
elseif #ARGV > 4 then
  local ids = {}
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
  redis.call('XACK', KEYS[2], ARGV[2], unpack(ids))
  redis.call('XDEL', KEYS[2], unpack(ids))
  if ARGV[4] == 'ack_replayed' then redis.call('HDEL', KEYS[4], unpack(ids)) end
end
return 1
