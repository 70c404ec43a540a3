-- Admits an inbound message: deduplicates by wamid, rate-limits the user (GCRA), appends the
-- user turn and returns the history, in one call.
-- ARGV: 1 wamid, 2 turn JSON, 3 the same turn marked rate-limited, 4 ttl s, 5 max history,
-- 6 GCRA interval ms (0: not rate-limited), 7 GCRA tolerance ms, 8 notice window ms,
-- 9 profile name, 10 return the history (1/0), 11 mode (`answer`, `record`, `reset`, `edit`,
-- `handoff`: the user asks for a person), 12 edit: the edited message's wamid, 13 edit: the new
-- text, 14 when the user wrote it (ms; empty when not written by the user: it opens the 24-hour
-- window), 15 handoff: how long a person keeps the conversation (ms), 16 the message for events
-- (JSON), 17 `echo` for an echo of what the business sent, 18 the language the message gives
-- away (empty: none), 19 `chosen` when the user chose it (`/idioma pt`: it then holds until the
-- user chooses again; a detected one replaces a detected one only).
-- Returns {code, notice, parts_sent, language, menu, history...}: `language` the conversation's
-- (`lg`: `es`, or `es:u` when the user chose it; empty: none yet) and `menu` the last menu the
-- bot sent (`mo`, JSON; empty: none). Code 0 new (answer it), 1 over the rate limit,
-- 2 seen before (answer again: not answered yet), 3 seen and rate-limited, 4 seen and answered,
-- 5 recorded (never answered), 6 recorded while a person (or another app) has the conversation.
local wamid, ttl, max_history = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5])
local interval, tolerance = tonumber(ARGV[6]), tonumber(ARGV[7])
local want_history, mode = ARGV[10] == '1', ARGV[11]
local marker = marker_of(wamid)
local state = redis.call('HMGET', conv, marker, 'n', 'c', 'tat', 'nq', 'seq', 'hu', 'ro', 'lu', 'x', 'lg', 'mo')
local language, menu = state[11] or "", state[12] or ""
local function event_message()
  local ok, message = pcall(cjson.decode, ARGV[16])
  if ok and type(message) == 'table' then return message end
  return {}
end
local function result(code, notice, parts)
  return {code, notice, parts, language, menu}
end
local function history(code, notice, parts)
  local out = result(code, notice, parts)
  if want_history then
    for _, turn in ipairs(redis.call('LRANGE', hist, 0, -1)) do out[#out + 1] = turn end
  end
  return out
end

local seen = state[1]
if seen then
  if seen == 'l' then return result(3, 0, 0) end
  if string.sub(seen, -2) == ':r' then return result(4, 0, 0) end
  if mode ~= 'answer' and mode ~= 'reset' and mode ~= 'handoff' then return result(5, 0, 0) end
  local parts = tonumber(string.match(seen, ':(%d+)$') or '0')
  return history(2, 0, parts)
end

local now = now_ms()
if ARGV[17] == 'echo' then
  -- The echo of a message wabot sent itself is already in the history as the bot's turn.
  if find_turn(redis.call('LRANGE', hist, 0, -1), wamid) then
    redis.call('HSET', conv, marker, '0:r')
    return result(5, 0, 0)
  end
end
local n = tonumber(state[2] or '') or migrate(state[6]) or 0
local fields = {'u', now}
-- The sliding TTL is refreshed when it has run down by 1 % (at most 30 s) since the last
-- refresh (`x`): a busy conversation saves two EXPIREs per message, and it still expires
-- within 30 s of SESSION_EXPIRE_TIME after its last message.
local touch_due = now - (tonumber(state[10] or '0') or 0) >= math.min(ttl * 10, 30000)
if touch_due then fields[#fields + 1] = 'x'; fields[#fields + 1] = now end
-- Who has the conversation until when (ms), as the keys' TTL must cover it.
local person_until = state[7]
local function touch(len)
  if touch_due then
    keep(conv, ttl, person_until, now)
    keep(hist, ttl, person_until, now)
  elseif len == 1 then
    -- A history list created just now (after a reset) has no TTL yet.
    keep(hist, ttl, person_until, now)
  end
end
if not state[3] then fields[#fields + 1] = 'c'; fields[#fields + 1] = now end
if ARGV[9] ~= '' then fields[#fields + 1] = 'name'; fields[#fields + 1] = ARGV[9] end
local wrote = tonumber(ARGV[14])
if wrote and wrote > now then wrote = now end
local last_wrote = tonumber(state[9] or '0') or 0
if wrote and wrote > last_wrote then
  fields[#fields + 1] = 'lu'; fields[#fields + 1] = wrote
end
-- The newest message (Meta's timestamps are seconds: a tie goes to the one processed later),
-- which an operator's message can quote.
if wrote and wrote >= last_wrote then
  fields[#fields + 1] = 'lw'; fields[#fields + 1] = wamid
end

-- What the message says about the language (`language_after`).
local function claim_language()
  local new = language_after(language, ARGV[18], ARGV[19] == 'chosen')
  if new then
    language = new
    fields[#fields + 1] = 'lg'; fields[#fields + 1] = new
  end
end

-- With a person (or another app): recorded in order, never answered; `/reset` still works.
-- The rate limit still holds for the `message.received` events: a flood is recorded (marked
-- rate-limited) without an event per message.
local answerable = mode == 'answer' or mode == 'handoff'
if answerable and owner(state[7], state[8], now) ~= 'bot' then
  claim_language()
  local reported, turn = true, ARGV[2]
  if interval > 0 then
    local tat = tonumber(state[4] or '0') or 0
    if tat < now then tat = now end
    if (tat - now) > tolerance then
      reported, turn = false, ARGV[3]
    else
      fields[#fields + 1] = 'tat'; fields[#fields + 1] = tat + interval
    end
  end
  n = n + 1
  fields[#fields + 1] = 'n'; fields[#fields + 1] = n
  fields[#fields + 1] = marker; fields[#fields + 1] = n .. ':r'
  redis.call('HSET', conv, unpack(fields))
  local len = redis.call('RPUSH', hist, turn)
  trim(len, max_history)
  touch(len)
  if reported then emit('message.received', {message = event_message()}, now) end
  return result(6, 0, 0)
end

local limited = false
local notice = 0
if interval > 0 then
  local tat = tonumber(state[4] or '0') or 0
  if tat < now then tat = now end
  limited = (tat - now) > tolerance
  if limited then
    if now >= (tonumber(state[5] or '0') or 0) then
      notice = 1
      fields[#fields + 1] = 'nq'; fields[#fields + 1] = now + tonumber(ARGV[8])
    end
  else
    fields[#fields + 1] = 'tat'; fields[#fields + 1] = tat + interval
  end
end

if mode == 'edit' and not limited then
  -- An edit replaces the text of the turn it edits while that turn is still kept.
  local target = redis.call('HGET', conv, marker_of(ARGV[12]))
  local target_n = target and tonumber(string.match(target, '^(%d+)'))
  if target_n then
    local len = redis.call('LLEN', hist)
    local index = target_n - (n - len + 1)
    if index >= 0 and index < len then
      local turn = decode_turn(redis.call('LINDEX', hist, index))
      if turn then
        turn[4] = ARGV[13]
        rare_of(turn, true).ed = true
        redis.call('LSET', hist, index, encode_turn(turn))
        fields[#fields + 1] = marker; fields[#fields + 1] = target_n .. ':r'
        redis.call('HSET', conv, unpack(fields))
        trim(len, max_history)
        touch(len)
        return result(5, 0, 0)
      end
    end
  end
end

if not limited and mode ~= 'edit' then claim_language() end
n = n + 1
local turn, mark = ARGV[2], n
if limited then turn = ARGV[3]; mark = 'l'
elseif not answerable and mode ~= 'reset' then mark = n .. ':r' end
fields[#fields + 1] = 'n'; fields[#fields + 1] = n
fields[#fields + 1] = marker; fields[#fields + 1] = mark
redis.call('HSET', conv, unpack(fields))
if mode == 'handoff' and not limited then
  person_until = now + tonumber(ARGV[15])
  with_person(person_until, cjson.encode({reason = 'requested', by = 'user', since = now}))
  -- The handoff may outlast the TTL the last refresh set: both keys are kept for it now.
  touch_due = true
end
if mode == 'reset' and not limited then
  -- The history, the last menu and a handoff start over; markers, the rate limit and the
  -- language survive a reset.
  redis.call('DEL', hist)
  redis.call('HDEL', conv, 'mo')
  menu = ""
  with_person(nil)
  keep(conv, ttl, nil, now)
  emit('conversation.reset', {by = 'user'}, now)
  return result(0, 0, 0)
end
if mode == 'handoff' and not limited then
  emit('handoff.requested', {message = event_message(), until_ms = now + tonumber(ARGV[15])}, now)
end
local len = redis.call('RPUSH', hist, turn)
-- One turn of slack: the reply's record trims to the bound, so a message costs one trim.
trim(len, max_history + 1)
touch(len)
if limited then return result(1, notice, 0) end
if not answerable then return result(5, 0, 0) end
return history(0, 0, 0)
