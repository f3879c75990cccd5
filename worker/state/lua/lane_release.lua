-- uses: ratelimit, ttl
-- lane_release.lua: a feeder takes what an account can send next from its lanes: realtime before
-- bulk, first in first out, at most `limit`, no more than the account's rate grants within
-- `horizon_ms` (each released step gets its slot here), no more than `max_released` waiting in
-- the shared queue (released, not begun), and, when the cap is enforced, no more than its
-- in-flight cap leaves room for.
-- A released step counts in flight from here ('r:' and its task id) until it begins, then under
-- its claim's owner until it ends, so the cap holds across the hand-over.
-- Taken entries are leased; a lease that runs out (the feeder died before publishing) puts its
-- entry back at the head of its lane, to be released again (a repeat the idempotency key makes
-- harmless).
-- KEYS[1] lane_realtime  the account's realtime lane (list of entry json)
-- KEYS[2] lane_bulk      the account's bulk lane
-- KEYS[3] leases         entries taken, not yet published (member: entry json, score: lease end)
-- KEYS[4] inflight       the account's steps in flight (member: owner, score: deadline ms)
-- KEYS[5] rate_key       the account's rate limiter (theoretical arrival time)
-- KEYS[6] cooloff_key    the account's cool-off after a 429
-- KEYS[7] released       the account's released steps not begun yet (member: 'r:' task id)
-- ARGV[1] emission_us    one send per emission_us (<= 0: no rate limit)
-- ARGV[2] tolerance_us   burst credit
-- ARGV[3] horizon_ms     how far ahead slots are taken
-- ARGV[4] max_in_flight  the account's cap on steps in flight (0: none)
-- ARGV[5] limit          the most entries taken
-- ARGV[6] lease_ms       how long a taken entry is held for its feeder
-- ARGV[7] grace_ms       how long a released step counts in flight before it begins
-- ARGV[8] max_released  the most released steps not begun yet
-- ARGV[9] enforce_cap    '1': release no more than max_in_flight leaves room for
-- Returns {realtime_left, bulk_left, leased, entry_json1, slot_at_ms1, entry_json2, ...}
-- (leased: entries still leased after this call; slot_at_ms on Redis's clock, 0: none needed).
-- The leases key has no expiry: its entries leave it only by `done` or by going back to a lane.
local lane_realtime, lane_bulk, leases, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate_key, cooloff_key, released = KEYS[5], KEYS[6], KEYS[7]
local emission_us, tolerance_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local horizon_ms, max_in_flight, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lease_ms, grace_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
local max_released, enforce_cap = tonumber(ARGV[8]), ARGV[9]

local now_ms = math.floor(now_us() / 1000)

local function lane_key(entry)
  local ok, body = pcall(cjson.decode, entry)
  if ok and type(body) == 'table' and body.lane == 'bulk' then
    return lane_bulk
  end
  return lane_realtime
end

local function entry_id(entry)
  local ok, body = pcall(cjson.decode, entry)
  if ok and type(body) == 'table' and type(body.id) == 'string' then
    return body.id
  end
  return entry
end

for _, entry in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms, 'LIMIT', 0, limit)) do
  redis.call('ZREM', leases, entry)
  redis.call('LPUSH', lane_key(entry), entry)
end

redis.call('ZREMRANGEBYSCORE', released, '-inf', now_ms)
local budget = math.min(limit, max_released - redis.call('ZCARD', released))
if max_in_flight > 0 then
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now_ms)
  if enforce_cap == '1' then
    budget = math.min(budget, max_in_flight - redis.call('ZCARD', inflight))
  end
end
local out = {}
while budget > 0 do
  local lane = lane_realtime
  if redis.call('LLEN', lane) == 0 then
    lane = lane_bulk
  end
  if redis.call('LLEN', lane) == 0 then
    break
  end
  local slot = rate_slot(rate_key, cooloff_key, emission_us, tolerance_us, horizon_ms)
  if slot[1] ~= 'ok' then
    break
  end
  local entry = redis.call('LPOP', lane)
  -- each later entry's lease ends a microsecond sooner: put back oldest-score first, each at the
  -- head, the first taken ends at the head again
  redis.call('ZADD', leases, now_ms + lease_ms - (#out / 2) * 0.001, entry)
  local member = 'r:' .. entry_id(entry)
  redis.call('ZADD', released, now_ms + grace_ms, member)
  extend_ttl(released, grace_ms * 2)
  if max_in_flight > 0 then
    redis.call('ZADD', inflight, now_ms + grace_ms, member)
    extend_ttl(inflight, grace_ms * 2)
  end
  table.insert(out, entry)
  table.insert(out, slot[3])
  budget = budget - 1
end
local result = {redis.call('LLEN', lane_realtime), redis.call('LLEN', lane_bulk),
                redis.call('ZCARD', leases)}
for _, item in ipairs(out) do
  table.insert(result, item)
end
return result
