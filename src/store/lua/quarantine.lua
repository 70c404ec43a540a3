-- Moves a conversation whose stored state is corrupt out of the way (kept a week for forensics),
-- so the user's next message starts a fresh one instead of failing the same way.
-- KEYS[3], KEYS[4]: where the hash and the list go. ARGV: how long they are kept, s.
local moved = 0
for i = 1, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i + 2])
    redis.call('EXPIRE', KEYS[i + 2], tonumber(ARGV[1]))
    moved = moved + 1
  end
end
return moved
