-- KEYS: lease. ARGV: token. Releases only our own lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
