-- uses: status
-- status_dead.lua: a step was dead-lettered: record why, and let higher steps of its journey go.
-- KEYS[1] status hash   KEYS[2] tracking index   KEYS[3] journey steps
-- KEYS[4] order pending   KEYS[5] order waiters   KEYS[6] parked
-- ARGV[1] idempotency key   ARGV[2] step ('' if none)   ARGV[3] tracking id   ARGV[4] journey
-- ARGV[5] phone (masked)    ARGV[6] template id         ARGV[7] now ms        ARGV[8] retention ms
-- ARGV[9] reason   ARGV[10] Zalo code ('' if none)
-- Returns how many steps waiting for this one were woken.
advance(KEYS[1], 'dead_lettered')
identify(KEYS[1], 1)
redis.call('HSET', KEYS[1], 'dead_at_ms', ARGV[7], 'dead_reason', ARGV[9], 'dead_code', ARGV[10],
  'updated_at_ms', ARGV[7])
redis.call('SET', KEYS[2], KEYS[1], 'PX', ARGV[8])
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) or 0, KEYS[1])
keep(ARGV[8], KEYS[1], KEYS[3])
return order_done(KEYS[4], KEYS[5], KEYS[6], KEYS[1], ARGV[7])
