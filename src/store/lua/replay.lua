-- KEYS: dead letters, inbox. ARGV: dead-letter id. Moves the stored item back to the inbox.
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then return 0 end
local fields = entries[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'm' then
    redis.call('XADD', KEYS[2], '*', 'm', fields[i + 1])
    redis.call('XDEL', KEYS[1], ARGV[1])
    return 1
  end
end
return 0
