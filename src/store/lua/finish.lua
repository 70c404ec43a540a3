-- KEYS: lease, inbox, dead. ARGV: token, group, entry id, lease ttl ms, and for a dead letter:
-- stored JSON, error, attempts, time ms. Acknowledges and deletes the entry (after copying it to
-- the dead-letter stream, which keeps about the newest 100,000) while we hold the partition, so
-- the inbox only holds unfinished work.
if not hold_lease(ARGV[1], ARGV[4]) then return 0 end
if ARGV[5] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100000', '*', 'm', ARGV[5], 'error', ARGV[6],
    'attempts', ARGV[7], 'failed_at', ARGV[8], 'source', ARGV[3])
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[2], ARGV[3])
return 1
