-- uses: status
-- status_parked.lua: a step waits in the parking lot (quota, night, paused account, ...).
-- KEYS[1] status hash   KEYS[2] tracking index   KEYS[3] journey steps
-- ARGV[1] idempotency key   ARGV[2] step ('' if none)   ARGV[3] tracking id   ARGV[4] journey
-- ARGV[5] phone (masked)    ARGV[6] template id         ARGV[7] now ms        ARGV[8] retention ms
-- ARGV[9] reason   ARGV[10] due ms ('' while waiting for a resume)
-- Returns 1 when recorded, 0 when the step was already further along.
if advance(KEYS[1], 'parked') == 0 then
  return 0
end
identify(KEYS[1], 1)
redis.call('HSET', KEYS[1], 'parked_reason', ARGV[9], 'parked_until_ms', ARGV[10],
  'updated_at_ms', ARGV[7])
redis.call('SET', KEYS[2], KEYS[1], 'PX', ARGV[8])
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) or 0, KEYS[1])
keep(ARGV[8], KEYS[1], KEYS[3])
return 1
