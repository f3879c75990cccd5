-- quota_observe.lua: fold a remainingQuota figure reported by Zalo into the shared counter.
-- KEYS[1]  quota hash of the account (remaining, daily, inflight, updated_at_ms)
-- ARGV[1]  remainingQuota reported, ARGV[2] dailyQuota reported ('' if absent),
-- ARGV[3]  mode:
--          'sent' after our own send: settles its unit (inflight - 1), then lowers the counter to
--                 Zalo's figure if that is lower (never raises it). Not "figure - inflight":
--                 answers arrive out of order, and a send still in flight for us may already be
--                 counted by Zalo, so subtracting would drift the counter down by one per reorder.
--                 The counter drops only when someone else (another system on the same OA) used
--                 more quota than we have in flight;
--          'init' a first probe: sets the counter only if none exists (concurrent first probes
--                 must not overwrite reservations already taken);
--          'set'  a probe after exhaustion or a reset: Zalo's figure minus the sends in flight.
-- ARGV[4]  expire-at in ms (the next assumed reset), ARGV[5] now in ms
-- Returns the counter after the update.
local inflight = tonumber(redis.call('HGET', KEYS[1], 'inflight') or '0')
if ARGV[3] == 'sent' and inflight > 0 then
  inflight = redis.call('HINCRBY', KEYS[1], 'inflight', -1)
end
local current = redis.call('HGET', KEYS[1], 'remaining')
local mode = ARGV[3]
local candidate = tonumber(ARGV[1])
if mode ~= 'sent' then
  candidate = math.max(candidate - inflight, 0)
end
local take = (mode == 'set')
  or (current == false)
  or (mode == 'sent' and candidate < tonumber(current))
if take then
  redis.call('HSET', KEYS[1], 'remaining', candidate)
  current = candidate
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'daily', ARGV[2])
end
redis.call('HSET', KEYS[1], 'updated_at_ms', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return tonumber(current)
