-- observe(key, reported_text, daily, mode, expire_at_ms, now_ms, settled_before): fold a
-- remainingQuota figure in (daily: '' if Zalo did not report it).
--   'sent' after our own send: settles its unit (inflight - 1), then lowers the counter to
--          Zalo's figure if that is lower (never raises it). Not "figure - inflight": answers
--          arrive out of order, and a send still in flight for us may already be counted by
--          Zalo, so subtracting would drift the counter down by one per reorder. The counter
--          drops only when someone else (another system on the same OA) used more quota than
--          we have in flight;
--   'init' a first probe: sets the counter only if none exists (concurrent first probes must
--          not overwrite reservations already taken);
--   'set'  a probe after exhaustion or a reset: Zalo's figure minus the sends in flight, and
--          minus the sends settled since the probe began (settled_before: the `settled` count
--          read before the probe's HTTP call, '' if unknown). A send Zalo accepted after
--          answering the probe but settled before this fold is in neither figure otherwise.
--          Both subtractions may count a send Zalo's figure already holds: the counter errs
--          low, never high.
-- Every send settled as spent counts once in `settled`.
-- Returns the counter after the update.
local function settled_since(key, settled_before)
  local before = tonumber(settled_before)
  if before == nil then
    return 0
  end
  return math.max(tonumber(redis.call('HGET', key, 'settled') or '0') - before, 0)
end

local function observe(key, reported_text, daily, mode, expire_at_ms, now_ms, settled_before)
  local inflight = tonumber(redis.call('HGET', key, 'inflight') or '0')
  if mode == 'sent' then
    redis.call('HINCRBY', key, 'settled', 1)
    if inflight > 0 then
      inflight = redis.call('HINCRBY', key, 'inflight', -1)
    end
  end
  local current = redis.call('HGET', key, 'remaining')
  local candidate = tonumber(reported_text)
  if mode ~= 'sent' then
    candidate = math.max(candidate - inflight - settled_since(key, settled_before), 0)
  end
  local take = (mode == 'set') or (current == false)
    or (mode == 'sent' and candidate < tonumber(current))
  if take then
    redis.call('HSET', key, 'remaining', candidate)
    current = candidate
  end
  if daily ~= '' then
    redis.call('HSET', key, 'daily', daily)
  end
  redis.call('HSET', key, 'updated_at_ms', now_ms)
  redis.call('PEXPIREAT', key, expire_at_ms)
  return tonumber(current)
end

-- settle(key, give_back): settle a reserved unit without a figure from Zalo: give it back
-- ('1': Zalo surely did not send) or keep it spent ('0'). Returns the counter, or -1 if gone.
local function settle(key, give_back)
  if redis.call('HEXISTS', key, 'remaining') == 0 then
    return -1
  end
  if tonumber(redis.call('HGET', key, 'inflight') or '0') > 0 then
    redis.call('HINCRBY', key, 'inflight', -1)
  end
  if give_back == '1' then
    return redis.call('HINCRBY', key, 'remaining', 1)
  end
  redis.call('HINCRBY', key, 'settled', 1)
  return tonumber(redis.call('HGET', key, 'remaining'))
end

-- rebase(key, prev_daily, new_daily, expire_at_ms, now_ms): Zalo changed the OA's daily quota
-- (webhook change_oa_daily_quota). What was used today stays used, so the counter moves by the
-- change, never below 0: new minus the daily figure we hold (so a redelivered event moves it
-- once), or minus the event's previous figure when we hold none. Without a counter only the
-- daily figure is kept (the next probe sets the counter).
-- Returns the counter after the update, or -1 when there is none.
local function rebase(key, prev_daily, new_daily, expire_at_ms, now_ms)
  local prev = tonumber(redis.call('HGET', key, 'daily') or '') or tonumber(prev_daily)
  local remaining = tonumber(redis.call('HGET', key, 'remaining') or '')
  if remaining ~= nil and prev ~= nil then
    remaining = math.max(remaining + tonumber(new_daily) - prev, 0)
    redis.call('HSET', key, 'remaining', remaining)
  end
  redis.call('HSET', key, 'daily', new_daily, 'updated_at_ms', now_ms)
  redis.call('PEXPIREAT', key, expire_at_ms)
  return remaining or -1
end
