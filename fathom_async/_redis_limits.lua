-- The shared rate-limit window of one bucket (see fathom_async/_redis.py).
-- KEYS: grants (sorted set of grant times), turns (sorted set of promised times; a
--       member is the turn's class, 'I', 'A' or 'B', then its ticket), state (hash:
--       pause, budget, until, seq), generation (string).
-- Classes: 'I' interactive; 'B' bulk, which may hold `limit - reserve` grants of a
-- window and waits behind every turn; 'A' aged bulk, limited like bulk but in the
-- interactive line, so bulk work that waited `bulk_max_wait` keeps its place across
-- processes. A turn of any other class (an older script's) counts as interactive.
-- ARGV: op, limit, period, grace, known generation, reserve, early, then per op:
--   take:    classes ('I'/'A'/'B' per wanted grant, in serving order), ticket, new ticket,
--            seeds, full re-seed flag, seed pause, refunds, most (grants at most: the
--            classes may name one waiter more than the process can let go now)
--   observe: pause (-1: none), remaining (-1: none), reset (-1: none)
--   leave:   a ticket prefix: every turn whose ticket starts with it is given up
-- Times are microseconds of Redis time (TIME). Grant times only ever grow: a grant
-- may be recorded up to `early` in the future (a turn confirmed early), and every
-- later grant is recorded no earlier, so the sorted set is in grant order. The set
-- keeps every grant of the last `period` (trimmed by time, never by count: a refunded
-- grant must not leave the window short of an older one that still counts).
local G, T, S, GEN = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local known = ARGV[5]
local reserve = tonumber(ARGV[6])
local early = tonumber(ARGV[7])
local function fmt(x) return string.format('%.0f', x) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local gen = redis.call('GET', GEN)
if not gen then
  gen = fmt(now)
  redis.call('SET', GEN, gen)
end
local function field(name)
  local v = redis.call('HGET', S, name)
  if v then return tonumber(v) end
  return nil
end
local pause = field('pause') or 0
local budget = field('budget')
local budget_until = field('until') or 0
if budget and now >= budget_until then
  budget = nil
  redis.call('HDEL', S, 'budget', 'until')
end
-- `room` is how many grants a class may hold in a window: `limit` for interactive,
-- `limit - reserve` for bulk; `held` the server budget kept back from the class.
local function window_at(room)
  local card = redis.call('ZCARD', G)
  if card < room then return 0 end
  local row = redis.call('ZRANGE', G, card - room, card - room, 'WITHSCORES')
  return tonumber(row[2]) + period
end
local function blocked_at(promised, held)
  local at = pause
  if budget and budget - promised - held <= 0 and budget_until > at then at = budget_until end
  return at
end
-- `turns` are the due times of the turns a grant waits behind, in order: each counts
-- as a grant made before ours.
local function line_at(turns, room)
  local card = redis.call('ZCARD', G)
  local idx = card + #turns - room
  if idx < 0 then return 0 end
  if idx < card then
    local row = redis.call('ZRANGE', G, idx, idx, 'WITHSCORES')
    return tonumber(row[2]) + period
  end
  return turns[idx - card + 1] + period
end
local function last_grant()
  local row = redis.call('ZRANGE', G, -1, -1, 'WITHSCORES')
  if row[2] then return tonumber(row[2]) end
  return 0
end
local function class_of(c)
  if c == 'B' or c == 'A' then return limit - reserve, reserve end
  return limit, 0
end
local granted_at, turn, turn_class = {}, 0, ''
if op == 'take' then
  local classes = ARGV[8]
  local ticket, new_ticket = ARGV[9], ARGV[10]
  local seeds, full, seed_pause = ARGV[11], ARGV[12] == '1', tonumber(ARGV[13])
  local most = tonumber(ARGV[15]) or #classes
  if known ~= '' and known ~= gen and not full then
    return {1, now, gen}
  end
  if seeds ~= '' then
    local seq = redis.call('HINCRBY', S, 'seq', 1)
    local i = 0
    for v in string.gmatch(seeds, '%d+') do
      local t = tonumber(v)
      if t > now - period then
        i = i + 1
        redis.call('ZADD', G, fmt(t), 's' .. seq .. ':' .. i)
      end
    end
  end
  if seed_pause > pause then
    pause = seed_pause
    redis.call('HSET', S, 'pause', fmt(pause))
  end
  for r in string.gmatch(ARGV[14], '%d+') do
    local row = redis.call('ZRANGEBYSCORE', G, r, r, 'LIMIT', 0, 1)
    if row[1] then redis.call('ZREM', G, row[1]) end
  end
  redis.call('ZREMRANGEBYSCORE', G, '-inf', fmt(now - period))
  redis.call('ZREMRANGEBYSCORE', T, '-inf', '(' .. fmt(now - grace))
  local held_turn = ''  -- the class of the turn the caller confirms, if it holds one
  if ticket ~= '' then
    for _, c in ipairs({'I', 'A', 'B'}) do
      if redis.call('ZREM', T, c .. ticket) == 1 then held_turn = c; break end
    end
  end
  -- The line: interactive (and aged bulk) turns go before every bulk grant, as
  -- interactive waiters do within a process; bulk turns only before bulk grants, so
  -- they never keep an interactive call from the reserve. The holder of a turn keeps
  -- its place in the line of its turn's class: its first grant of that class waits
  -- behind no turn of that class.
  local all_turns, interactive_turns, no_turns = {}, {}, {}
  local rows = redis.call('ZRANGE', T, 0, -1, 'WITHSCORES')
  for j = 1, #rows, 2 do
    local due = tonumber(rows[j + 1])
    all_turns[#all_turns + 1] = due
    if string.sub(rows[j], 1, 1) ~= 'B' then interactive_turns[#interactive_turns + 1] = due end
  end
  local function line_of(c, own)
    if c ~= 'B' then
      if own then return no_turns end
      return interactive_turns
    end
    if own then return interactive_turns end
    return all_turns
  end
  -- When a grant of class c may happen; `own`: the caller's place in c's line is first.
  local function due_at(c, own)
    local room, held = class_of(c)
    local turns = line_of(c, own)
    return math.max(window_at(room), blocked_at(#turns, held), line_at(turns, room),
                    last_grant(), now)
  end
  -- Serve in order; an interactive that may not go stops the rest (bulk could not
  -- go either); a bulk (aged or not) held back by the reserve lets later
  -- interactives try, and no later bulk.
  -- A slot due within `early` is granted now and recorded at its due time: the
  -- process hands the permit over then, so waking late costs no slot.
  local granted, stopped, bulk_held, short = 0, false, false, ''
  for i = 1, #classes do
    local c = string.sub(classes, i, i)
    local t = 0
    local room_left = granted < most
    if room_left and not stopped and not (c ~= 'I' and bulk_held) then
      local at = due_at(c, c == held_turn)
      if at <= now + early then
        t = at
        if c == held_turn then held_turn = '' end
        redis.call('ZADD', G, fmt(t), 'g' .. redis.call('HINCRBY', S, 'seq', 1))
        if budget then budget = budget - 1 end
        granted = granted + 1
      end
    end
    granted_at[i] = fmt(t)
    if t == 0 and room_left then
      if c == 'I' then stopped = true; short = 'I'
      else bulk_held = true; if short == '' then short = c end end
    end
  end
  if short ~= '' and new_ticket ~= '' then
    turn = due_at(short, short == held_turn)
    turn_class = short
    redis.call('ZADD', T, fmt(turn), short .. new_ticket)
  end
  if budget then redis.call('HSET', S, 'budget', fmt(budget)) end
  local keep = math.ceil((period + grace) / 1000) + 1000
  redis.call('PEXPIRE', G, keep)
  if redis.call('ZCARD', T) > 0 then redis.call('PEXPIRE', T, keep) end
elseif op == 'leave' then
  local prefix = ARGV[8]
  for _, member in ipairs(redis.call('ZRANGE', T, 0, -1)) do
    if string.sub(member, 2, #prefix + 1) == prefix then redis.call('ZREM', T, member) end
  end
else
  local pause_for, remaining, reset = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  if pause_for >= 0 and now + pause_for > pause then
    pause = now + pause_for
    redis.call('HSET', S, 'pause', fmt(pause))
  end
  if remaining >= 0 then
    local reset_at = now + period
    if reset >= 0 then reset_at = now + reset end
    if budget and reset < 0 then
      -- without a reset a report cannot say it is newer: both hold
      remaining = math.min(remaining, budget)
      reset_at = math.max(reset_at, budget_until)
    elseif budget and reset_at <= budget_until then
      -- the same server period, or a late report: the stricter one holds
      remaining = math.min(remaining, budget)
      reset_at = budget_until
    end
    budget, budget_until = remaining, reset_at
    redis.call('HSET', S, 'budget', fmt(budget), 'until', fmt(budget_until))
  end
end
local last = math.max(pause, budget_until, now + period + grace)
redis.call('PEXPIRE', S, math.ceil((last - now) / 1000) + 1000)
local in_window = redis.call('ZCOUNT', G, '(' .. fmt(now - period), '+inf')
local room_b, held_b = class_of('B')
return {0, now, gen, table.concat(granted_at, ' '), turn, pause, budget or -1, budget_until, in_window,
        math.max(window_at(limit), blocked_at(0, 0)),
        math.max(window_at(room_b), blocked_at(0, held_b)), turn_class}
