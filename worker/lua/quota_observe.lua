-- quota_observe.lua: fold a quota figure reported by Zalo into the shared counter.
-- KEYS[1]  quota hash of the account
-- ARGV[1]  remainingQuota reported, ARGV[2] dailyQuota reported ('' if absent),
-- ARGV[3]  mode: 'min' (after a send: never raise the counter, in-flight sends are already
--          subtracted) or 'set' (a probe or a reset: take Zalo's figure),
-- ARGV[4]  expire-at in ms (the next assumed reset), ARGV[5] now in ms
-- Returns the counter after the update.
local current = redis.call('HGET', KEYS[1], 'remaining')
local reported = tonumber(ARGV[1])
if ARGV[3] == 'set' or not current or reported < tonumber(current) then
  redis.call('HSET', KEYS[1], 'remaining', reported)
  current = reported
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'daily', ARGV[2])
end
redis.call('HSET', KEYS[1], 'updated_at_ms', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return tonumber(current)
