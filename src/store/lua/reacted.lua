-- A user reacted to a message (or took the reaction back): the reaction is kept on the turn it
-- is about, while the history still has it.
-- ARGV: 1 the wamid reacted to, 2 the emoji ('' when the reaction was removed).
-- Returns 1 when the turn was found, 0 otherwise.
local index, turn = find_turn(redis.call('LRANGE', hist, 0, -1), ARGV[1])
if not index then return 0 end
local rare = rare_of(turn, ARGV[2] ~= '')
if ARGV[2] ~= '' then rare.rx = ARGV[2] else rare.rx = nil end
redis.call('LSET', hist, index - 1, encode_turn(turn))
return 1
