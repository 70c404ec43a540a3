-- Shared by the conversation scripts. KEYS[1]: the conversation hash (metadata, markers, rate
-- limit, handoff, window), KEYS[2]: its history list (one turn per element, oldest first: see
-- `turns.lua`),
-- KEYS[3]: the partition's sorted set of conversations a person has (score: until, ms),
-- KEYS[4] (only when events are on): the partition's event stream.
local conv, hist, human, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

-- `<pnid>:<user>` of the conversation, from its key `{prefix:p}:conv:<pnid>:<user>`.
local function conversation_id()
  return string.match(conv, '}:conv:(.+)$')
end

-- A person has the conversation until `until_ms` (nil: nobody any more).
local function with_person(until_ms, info)
  if until_ms then
    redis.call('HSET', conv, 'hu', until_ms, 'hi', info)
    redis.call('ZADD', human, until_ms, conversation_id())
  else
    redis.call('HDEL', conv, 'hu', 'hi')
    redis.call('ZREM', human, conversation_id())
  end
end

-- The conversation's language (`lg`) after a message claimed `claimed` ('' none), or nil when
-- it stays: a user's choice (`chosen`, stored as `es:u`) holds until they choose again; a
-- detected language replaces only a detected one.
local function language_after(current, claimed, chosen)
  if claimed == '' then return nil end
  local new
  if chosen then new = claimed .. ':u'
  elseif string.sub(current, -2) ~= ':u' then new = claimed end
  if new and new ~= current then return new end
  return nil
end

-- The marker field of a message: the same digest as earlier versions keeps their markers valid.
local function marker_of(wamid)
  return 'w:' .. digest_of(wamid)
end

-- Conversations written by versions before the history list kept their turns as `m:<n>` hash
-- fields next to `seq`/`lo`: drop those fields (markers stay valid) once.
local function migrate(seq)
  if not seq then return nil end
  for _, field in ipairs(redis.call('HKEYS', conv)) do
    if string.sub(field, 1, 2) ~= 'w:' and field ~= 'name' then redis.call('HDEL', conv, field) end
  end
  return tonumber(seq)
end

-- Drops the oldest turns beyond `keep` and their markers.
local function trim(len, keep)
  if len <= keep then return end
  local dropped = redis.call('LPOP', hist, len - keep)
  local markers = {}
  for _, raw in ipairs(dropped) do
    local turn = decode_turn(raw)
    if turn and type(turn[3]) == 'string' and turn[3] ~= '' then
      markers[#markers + 1] = 'w:' .. turn[3]
    end
  end
  if #markers > 0 then redis.call('HDEL', conv, unpack(markers)) end
end

-- Appends an event for `events.webhook_url` (nothing when events are off). The conversation is
-- named by its key, `{prefix:p}:conv:<pnid>:<user>`; the id is given at delivery (from the
-- entry id, stable across redeliveries).
local function emit(kind, body, now)
  if not events then return end
  local pnid, user = string.match(conv, '}:conv:([^:]+):(.+)$')
  body.type = kind
  body.at = now
  body.phone_number_id = pnid
  body.user = user
  redis.call('XADD', events, 'MAXLEN', '~', 100000, '*', 'e', cjson.encode(body))
end

-- Who has the conversation: 'bot', 'human' (a person, until `hu`) or 'other_app' (Meta's
-- conversation routing gave it to another app). An expired handoff is cleared.
local function owner(hu, ro, now)
  if ro and ro ~= '' then return 'other_app' end
  local until_ms = tonumber(hu or '')
  if until_ms then
    if until_ms > now then return 'human' end
    with_person(nil)
  end
  return 'bot'
end
