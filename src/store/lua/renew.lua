-- KEYS: lease. ARGV: token, ttl ms. 1 when the lease is (still) ours and extended.
if not hold_lease(ARGV[1], ARGV[2]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
