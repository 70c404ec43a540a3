-- Keeps the lease KEYS[1] for token `t`: true when we own it, or took back a lease that vanished
-- (Redis restarted after it expired: nobody else holds it); false when another replica owns it.
local function hold_lease(t, ttl)
  local owner = redis.call('GET', KEYS[1])
  if owner == t then return true end
  if owner then return false end
  redis.call('SET', KEYS[1], t, 'PX', ttl)
  return true
end
