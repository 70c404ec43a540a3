-- Notes the last reply Meta reported as failed. ARGV: failure JSON. Only touches an existing
-- conversation, and does not extend its TTL (a status is not activity).
if redis.call('EXISTS', conv) == 0 then return 0 end
redis.call('HSET', conv, 'lf', ARGV[1])
return 1
