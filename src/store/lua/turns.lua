-- Stored turns (the history list's elements): `[role, ts, id, text]`, then the delivery state
-- ('' none) and, only when one is set, an object of the rare fields (`k` kind, `rl`, `ed`, `fe`
-- failure, `re`). `id` is the digest of the message's wamid, the user's or the one Meta gave
-- ours. Turns of earlier versions are objects (`r`, `t`, `w` digest, `o` our full wamid, `ts`,
-- `d`...) and are read as the same table (`store/turn.rs` is the Rust side).

-- The digest naming a message: its marker field and its turn's id (wamids are ~60 bytes).
local function digest_of(wamid)
  return string.sub(redis.sha1hex(wamid), 1, 16)
end

local function decode_turn(raw)
  local ok, turn = pcall(cjson.decode, raw)
  if not ok or type(turn) ~= 'table' then return nil end
  if turn[1] ~= nil then
    if type(turn[6]) ~= 'table' then turn[6] = nil end
    return turn
  end
  if turn.r == nil then return nil end
  local id = turn.w or (turn.o and digest_of(turn.o)) or ''
  local rare = {k = turn.k, rl = turn.rl, ed = turn.ed, fe = turn.fe, re = turn.re}
  if next(rare) == nil then rare = nil end
  return {turn.r, turn.ts, id, turn.t or '', turn.d or '', rare}
end

local function encode_turn(turn)
  local rare = turn[6]
  if rare ~= nil and next(rare) == nil then rare = nil end
  local delivery = turn[5]
  if delivery == cjson.null then delivery = nil end
  if rare then
    return cjson.encode({turn[1], turn[2], turn[3], turn[4], delivery or '', rare})
  elseif delivery and delivery ~= '' then
    return cjson.encode({turn[1], turn[2], turn[3], turn[4], delivery})
  end
  return cjson.encode({turn[1], turn[2], turn[3], turn[4]})
end

-- The rare fields of a decoded turn, created when `create`.
local function rare_of(turn, create)
  if turn[6] == nil and create then turn[6] = {} end
  return turn[6] or {}
end

-- The newest of `raws` (list elements) that is the message `wamid`: its index and the decoded
-- turn, or nil. A plain search first: only a candidate is decoded.
local function find_turn(raws, wamid)
  local id = digest_of(wamid)
  local needle, legacy = ',"' .. id .. '",', '"o":"' .. wamid .. '"'
  for i = #raws, 1, -1 do
    local raw = raws[i]
    if string.find(raw, needle, 1, true) or string.find(raw, legacy, 1, true) then
      local turn = decode_turn(raw)
      if turn and turn[3] == id then return i, turn end
    end
  end
  return nil
end
