-- Marks inbound messages answered by a reply recorded for a later message of the same burst.
-- ARGV: the wamids.
for _, wamid in ipairs(ARGV) do
  local field = marker_of(wamid)
  local seen = redis.call('HGET', conv, field)
  if seen and string.sub(seen, -2) ~= ':r' and seen ~= 'l' then
    redis.call('HSET', conv, field, string.match(seen, '^(%d+)') .. ':r')
  end
end
return 1
