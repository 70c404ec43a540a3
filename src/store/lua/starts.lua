-- Counts a start of processing for entries read again from the pending list (a new owner after
-- a crash, a restart): an entry that keeps killing its worker (memory, a panic that aborts) is
-- seen here however many replicas it kills, since the count lives in Redis, not in a process.
-- KEYS: the partition's start counts (hash: entry id -> starts). ARGV: the entry ids.
-- Returns the highest count among them. `finish.lua` forgets an entry's count when it is done.
local most = 0
for _, id in ipairs(ARGV) do
  local n = redis.call('HINCRBY', KEYS[1], id, 1)
  if n > most then most = n end
end
-- Forgotten counts of entries finished elsewhere cannot pile up for ever.
redis.call('EXPIRE', KEYS[1], 604800)
return most
