"""The Redis function library that decides admission for every replica.

One FCALL per request checks rpm, tpm, the daily budget and the in-flight
cap of a key and, only when all of them have room, takes that room, in one
atomic step on the server: two replicas can never both see the last place
free. Time is Redis's own clock (TIME), so replicas' clocks do not matter.

Keys, all under one hash tag per client so a Redis Cluster keeps them on one
slot (``cg:{name}:...``):

* ``rpm``   sorted set: hold id -> admission time (ms); the sliding minute
* ``tpm``   sorted set: hold id -> admission time (ms)
* ``amt``   hash: hold id -> tokens that entry counts (reservation, then settled)
* ``tot``   string: the sum of ``amt`` over the live ``tpm`` entries
* ``day``   string: tokens charged today (reservations + settlements);
            missing means "not seeded from the durable ledger yet"
* ``fly``   sorted set: hold id -> lease end (ms); the in-flight holds
* ``led``   hash: UTC day -> tokens charged (reservations + settlements) that
            are not in the durable ledger yet; any replica moves them there
            (``cg_take_ledger``), so what a replica charged outlives it
* ``res``   sorted set: hold id -> admission time (ms); the daily reservations this
            Redis took and that are not settled yet. A settlement that finds no
            mark (Redis lost its data since: restarted without persistence) never
            saw its reservation, so it charges what was used, not the correction
* ``took``  string: how many times ``led`` was taken to the ledger; a settlement
            returns it, so a replica knows which of its charges a flush (anyone's)
            took since, and which to charge again if Redis loses its data
* ``fls``   sorted set: flush id -> take time (ms); the hand-overs to the durable
            ledger under way (taken from ``led``, not known to be written yet)
* ``fl:<flush id>``  hash: UTC day -> tokens; what that flush took from ``led``
            (``led`` itself, renamed). Dropped once the ledger has the flush id;
            given back to ``led`` once the ledger has it marked abandoned, so a
            replica killed mid-flush loses nothing and a replay counts nothing twice

A hold whose lease ends without being renewed (its replica died) no longer
counts in ``fly``. Its tokens stay charged: upstream generated, and billed,
whether or not the replica lived to see the usage. They are in ``day`` and
in ``led`` from the reservation on (the same atomic step), so the durable
ledger gets them too, from whichever replica flushes that key next.
"""

from __future__ import annotations

LIBRARY_NAME = "claudegate"
# Bumped whenever the code below changes: a replica loads its own version
# (FUNCTION LOAD REPLACE) only when the server has an older one.
# 2: the caller's UTC day checked against Redis's clock; 3: count_request flag, cg_count;
# 4: the ledger's pending share in Redis (``led``), cg_take_ledger. Older callers pass fewer
# arguments and keep their own pending share, as before.
# 5: daily reservations marked in ``res``; a settlement of an unmarked one charges what was used.
# 6: ``took``, counted by cg_take_ledger and returned by cg_settle.
# 7: ``ledger_all`` (reserve's 11th argument): a key without a daily budget is charged to ``led``
# (and marked in ``res``) too, so the durable ledger is every key's usage; reserve's reply says
# so (``ledgered``). Callers that do not pass it ledger budgeted keys only, as before.
# 8: exactly-once hand-over: cg_take_ledger with a flush id (and ``fls``, the record's key) moves
# ``led`` into a record instead of deleting it, and says so ('tx' first); cg_drop_flush and
# cg_give_flush end a record. Callers that pass no flush id take (and delete) as before.
LIBRARY_VERSION = 8
WINDOW_MS = 60_000

LIBRARY = f"""#!lua name={LIBRARY_NAME}

local WINDOW = {WINDOW_MS}

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Drop tpm entries that left the window, taking their amounts off the total.
local function expire_tokens(tpm, amt, tot, now)
  local gone = redis.call('ZRANGEBYSCORE', tpm, '-inf', now - WINDOW)
  if #gone == 0 then return end
  local sum = 0
  for _, id in ipairs(gone) do
    sum = sum + (tonumber(redis.call('HGET', amt, id)) or 0)
    redis.call('HDEL', amt, id)
  end
  redis.call('ZREMRANGEBYSCORE', tpm, '-inf', now - WINDOW)
  local left = (tonumber(redis.call('GET', tot)) or 0) - sum
  if left <= 0 or redis.call('ZCARD', tpm) == 0 then redis.call('DEL', tot) else redis.call('SET', tot, left) end
end

-- ms until `need` more fits under `limit`, walking the window oldest first.
local function tokens_wait(tpm, amt, total, need, limit, now)
  local excess = total + need - limit
  local rows = redis.call('ZRANGE', tpm, 0, -1, 'WITHSCORES')
  for i = 1, #rows, 2 do
    excess = excess - (tonumber(redis.call('HGET', amt, rows[i])) or 0)
    if excess <= 0 then return math.max(0, tonumber(rows[i + 1]) + WINDOW - now) end
  end
  return WINDOW
end

-- A reservation that went to `led` is marked in `res` (when the caller names it): its
-- settlement checks the mark to tell whether this Redis still holds the reservation.
-- Marks left by killed replicas (never settled) go after the counter's lifetime: bounded.
local function mark_reserved(res, hold, now, day_ttl)
  if not res then return end
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now - day_ttl * 1000)
  redis.call('ZADD', res, now, hold)
  redis.call('EXPIRE', res, day_ttl)
end

-- KEYS: rpm tpm amt tot day fly [led [res]]
-- ARGV: hold tokens rpm_limit tpm_limit day_limit fly_limit lease_ms day_ttl_s [day_no [ledger_day [ledger_all]]]
--   (a limit < 0: none)
-- ledger_day: the day's field in `led`; the tokens taken for the daily budget are added there too,
-- and the hold is marked in `res` (its settlement will find the mark in this same Redis).
-- ledger_all '1': a key without a daily budget has its tokens added to `led` (and marked) as well
-- (its day counter moves only if it exists), so its settlement (day_counted 1) corrects them there.
-- day_no: the UTC day (ms // 86400000) the caller named `day` after; if Redis's
-- clock says another day, nothing is taken and the verdict is 'day' (the
-- caller's clock is off, or midnight passed): it asks again with Redis's day.
-- -> {{verdict, used, limit, wait_ms, now_ms, rpm_used, tpm_used, day_used [, ledgered]}}
-- ledgered (5, on 'ok'): 1 when the tokens went to `led`: the caller settles the hold there too.
local function reserve(keys, args)
  local rpm, tpm, amt, tot, day, fly = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]
  local hold = args[1]
  local tokens = tonumber(args[2])
  local rpm_limit, tpm_limit = tonumber(args[3]), tonumber(args[4])
  local day_limit, fly_limit = tonumber(args[5]), tonumber(args[6])
  local lease, day_ttl = tonumber(args[7]), tonumber(args[8])
  local day_no = tonumber(args[9])
  local now = now_ms()
  if day_no and math.floor(now / 86400000) ~= day_no then return {{'day', 0, 0, 0, now, 0, 0, 0}} end

  local flying = 0
  if fly_limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', fly, '-inf', now)
    flying = redis.call('ZCARD', fly)
    if flying >= fly_limit then return {{'inflight', flying, fly_limit, 1000, now, 0, 0, 0}} end
  end
  local requests = 0
  if rpm_limit >= 0 then
    redis.call('ZREMRANGEBYSCORE', rpm, '-inf', now - WINDOW)
    requests = redis.call('ZCARD', rpm)
    if requests + 1 > rpm_limit then
      -- The entry whose leaving makes room for one more.
      local idx = requests - rpm_limit
      local row = redis.call('ZRANGE', rpm, idx, idx, 'WITHSCORES')
      local wait = WINDOW
      if #row == 2 then wait = math.max(0, tonumber(row[2]) + WINDOW - now) end
      return {{'rpm', requests, rpm_limit, wait, now, requests, 0, 0}}
    end
  end
  local total = 0
  if tpm_limit >= 0 and tokens > 0 then
    if tokens > tpm_limit then return {{'too_big', tokens, tpm_limit, 0, now, requests, 0, 0}} end
    expire_tokens(tpm, amt, tot, now)
    total = tonumber(redis.call('GET', tot)) or 0
    if total + tokens > tpm_limit then
      return {{'tpm', total, tpm_limit, tokens_wait(tpm, amt, total, tokens, tpm_limit, now), now, requests, total, 0}}
    end
  end
  local used = 0
  if day_limit >= 0 and tokens > 0 then
    local raw = redis.call('GET', day)
    if not raw then return {{'seed', 0, day_limit, 0, now, requests, total, 0}} end
    used = tonumber(raw)
    if used + tokens > day_limit then return {{'daily', used, day_limit, 0, now, requests, total, used}} end
  end

  -- Every check passed: take the room, all of it, in this same step.
  if fly_limit >= 0 then redis.call('ZADD', fly, now + lease, hold) end
  if rpm_limit >= 0 then
    redis.call('ZADD', rpm, now, hold)
    redis.call('PEXPIRE', rpm, WINDOW * 2)
    requests = requests + 1
  end
  if tpm_limit >= 0 and tokens > 0 then
    redis.call('ZADD', tpm, now, hold)
    redis.call('HSET', amt, hold, tokens)
    total = redis.call('INCRBY', tot, tokens)
    for _, k in ipairs({{tpm, amt, tot}}) do redis.call('PEXPIRE', k, WINDOW * 2) end
  end
  local ledgered = 0
  if day_limit >= 0 and tokens > 0 then
    used = redis.call('INCRBY', day, tokens)
    redis.call('EXPIRE', day, day_ttl)
    if keys[7] and args[10] and args[10] ~= '' then
      redis.call('HINCRBY', keys[7], args[10], tokens)
      redis.call('EXPIRE', keys[7], day_ttl)
      mark_reserved(keys[8], hold, now, day_ttl)
      ledgered = 1
    end
  elseif tokens > 0 and args[11] == '1' and keys[7] and args[10] and args[10] ~= '' then
    if redis.call('EXISTS', day) == 1 then used = redis.call('INCRBY', day, tokens) end
    redis.call('HINCRBY', keys[7], args[10], tokens)
    redis.call('EXPIRE', keys[7], day_ttl)
    mark_reserved(keys[8], hold, now, day_ttl)
    ledgered = 1
  end
  return {{'ok', 0, 0, 0, now, requests, total, used, ledgered}}
end

-- KEYS: tpm amt tot day fly [led [res [took]]]
-- ARGV: hold delta day_counted(0/1) [ledger_day [used]]
-- -> `took` (the takes of `led` so far) when given, else 1
-- Replace a reservation by what was used; give the in-flight place back.
-- ledger_day (a counted hold whose reservation went to `led`): the delta goes there too.
-- used (with `res`): if this Redis holds no mark of the reservation, it lost its data since
-- (the reservation, in `day` and `led`, went with it, unless a flush had taken it): the
-- negative correction would take from the ledger tokens that never reached it, so what
-- was used is charged instead (never less than billed; a reservation already flushed
-- stays charged as well, the safe side).
local function settle(keys, args)
  local tpm, amt, tot, day, fly = keys[1], keys[2], keys[3], keys[4], keys[5]
  local hold, delta, counted = args[1], tonumber(args[2]), args[3] == '1'
  if counted and keys[7] and args[5] and args[4] and args[4] ~= '' then
    if redis.call('ZREM', keys[7], hold) == 0 then delta = tonumber(args[5]) end
  end
  if delta ~= 0 and counted and keys[6] and args[4] and args[4] ~= '' then
    redis.call('HINCRBY', keys[6], args[4], delta)
    redis.call('EXPIRE', keys[6], 2 * 86400)
  end
  if delta ~= 0 then
    -- Still in the window: the window's total moves too. Gone: only the day.
    if redis.call('HEXISTS', amt, hold) == 1 then
      local amount = redis.call('HINCRBY', amt, hold, delta)
      if amount < 0 then redis.call('HSET', amt, hold, 0); delta = delta - amount end
      local left = redis.call('INCRBY', tot, delta)
      if left < 0 then redis.call('SET', tot, 0) end
    end
    if counted and redis.call('EXISTS', day) == 1 then
      local used = redis.call('INCRBY', day, delta)
      if used < 0 then redis.call('SET', day, 0, 'KEEPTTL') end
    end
  end
  redis.call('ZREM', fly, hold)
  if keys[8] then return tonumber(redis.call('GET', keys[8])) or 0 end
  return 1
end

-- KEYS: rpm ; ARGV: id  One more request in the sliding minute, unchecked (a list's extra upstream page).
local function count(keys, args)
  redis.call('ZADD', keys[1], now_ms(), args[1])
  redis.call('PEXPIRE', keys[1], WINDOW * 2)
  return 1
end

-- KEYS: fly ; ARGV: lease_ms hold...  Extend the leases of holds still held.
local function renew(keys, args)
  local until_ = now_ms() + tonumber(args[1])
  local n = 0
  for i = 2, #args do
    n = n + redis.call('ZADD', keys[1], 'XX', 'CH', until_, args[i])
  end
  return n
end

-- KEYS: day [led] ; ARGV: tokens ttl_s [ledger_day]  The durable ledger's total (plus what is on
-- its way there), if nothing is there yet.
local function seed(keys, args)
  local tokens = tonumber(args[1])
  if keys[2] and args[3] then tokens = tokens + (tonumber(redis.call('HGET', keys[2], args[3])) or 0) end
  return redis.call('SET', keys[1], math.max(0, tokens), 'NX', 'EX', args[2]) and 1 or 0
end

-- KEYS: led [took [fls rec]] ; ARGV: [flush_id ttl_s]
-- -> day, tokens, day, tokens...  Take what is on its way to the durable ledger (the caller writes it).
-- With a flush id: ``led`` becomes the record ``rec`` (registered in ``fls`` at Redis's time) instead of
-- going away, and the reply starts with 'tx': the caller writes it under that id, then drops the record.
local function take_ledger(keys, args)
  local record = keys[4] and args[1] and args[1] ~= ''
  local rows = redis.call('HGETALL', keys[1])
  if #rows > 0 then
    if record then
      redis.call('RENAME', keys[1], keys[4])
      redis.call('EXPIRE', keys[4], args[2])
      redis.call('ZADD', keys[3], now_ms(), args[1])
      redis.call('EXPIRE', keys[3], args[2])
    else
      redis.call('DEL', keys[1])
    end
    if keys[2] then
      redis.call('INCR', keys[2])
      redis.call('EXPIRE', keys[2], 2 * 86400)
    end
  end
  if record then table.insert(rows, 1, 'tx') end
  return rows
end

-- KEYS: fls rec ; ARGV: flush_id  The ledger has the flush: its record goes.
local function drop_flush(keys, args)
  redis.call('ZREM', keys[1], args[1])
  redis.call('DEL', keys[2])
  return 1
end

-- KEYS: fls rec led ; ARGV: flush_id ttl_s  The ledger has the flush marked abandoned: its record goes
-- back to ``led``, once (-> 1; 0 when someone did already).
local function give_flush(keys, args)
  if redis.call('ZREM', keys[1], args[1]) == 0 then return 0 end
  local rows = redis.call('HGETALL', keys[2])
  for i = 1, #rows, 2 do redis.call('HINCRBY', keys[3], rows[i], rows[i + 1]) end
  if #rows > 0 then redis.call('EXPIRE', keys[3], args[2]) end
  redis.call('DEL', keys[2])
  return 1
end

-- KEYS: led ; ARGV: day tokens ttl_s  Give back what could not be written to the durable ledger.
local function give_ledger(keys, args)
  redis.call('HINCRBY', keys[1], args[1], args[2])
  redis.call('EXPIRE', keys[1], args[3])
  return 1
end

-- KEYS: replicas ; ARGV: replica ttl_ms  -> live replicas (heartbeat within ttl)
local function beat(keys, args)
  local now = now_ms()
  redis.call('ZADD', keys[1], now, args[1])
  redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now - tonumber(args[2]))
  return redis.call('ZCARD', keys[1])
end

local function version() return {LIBRARY_VERSION} end

redis.register_function('cg_reserve', reserve)
redis.register_function('cg_settle', settle)
redis.register_function('cg_renew', renew)
redis.register_function('cg_count', count)
redis.register_function('cg_seed', seed)
redis.register_function('cg_take_ledger', take_ledger)
redis.register_function('cg_give_ledger', give_ledger)
redis.register_function('cg_drop_flush', drop_flush)
redis.register_function('cg_give_flush', give_flush)
redis.register_function('cg_beat', beat)
redis.register_function{{function_name='cg_version', callback=version, flags={{'no-writes'}}}}
"""
