-- Applies a delivery status of a message we sent to its turn in the history: states only move
-- forward (sent < delivered < read < failed), so late or repeated statuses change nothing. A
-- failure is also kept as the conversation's last failure and reported as an event. Does not
-- extend the TTL (a status is not activity).
-- ARGV: 1 our message's wamid, 2 status (`sent`, `delivered`, `read`, `played`, `failed`;
-- or `reengaged`: the re-engagement template went out for this failed message, so a later
-- copy of its failure sends none), 3 error JSON (`{"code":..,"title":..}`, or '').
-- Returns {found (1/0), the turn's kind, already re-engaged (1/0)}.
if redis.call('EXISTS', conv) == 0 then return {0, '', 0} end
local rank = {sent = 1, delivered = 2, read = 3, played = 3, failed = 4}
local new_rank = rank[ARGV[2]] or 0
local found, kind, reengaged = 0, '', 0
local index, turn = find_turn(redis.call('LRANGE', hist, 0, -1), ARGV[1])
if index then
  found = 1
  local rare = rare_of(turn, false)
  kind = rare.k or 'text'
  if rare.re then reengaged = 1 end
  if ARGV[2] == 'reengaged' then
    if reengaged == 0 then
      rare_of(turn, true).re = true
      redis.call('LSET', hist, index - 1, encode_turn(turn))
    end
    return {found, kind, 1}
  end
  if new_rank > (rank[turn[5] or ''] or 0) then
    turn[5] = ARGV[2]
    if ARGV[3] ~= '' then rare_of(turn, true).fe = cjson.decode(ARGV[3]) end
    redis.call('LSET', hist, index - 1, encode_turn(turn))
  end
end
if ARGV[2] == 'failed' then
  local failure = {wamid = ARGV[1]}
  local error = nil
  if ARGV[3] ~= '' then
    error = cjson.decode(ARGV[3])
    failure.code = error.code
    failure.title = error.title
  end
  redis.call('HSET', conv, 'lf', cjson.encode(failure))
  emit('message.failed', {message_id = ARGV[1], error = error}, now_ms())
end
return {found, kind, reengaged}
