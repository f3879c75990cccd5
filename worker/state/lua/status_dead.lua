-- uses: status
-- status_dead.lua: a step was dead-lettered: record why, and let higher steps of its journey go.
-- KEYS[1]  status_hash      the step's status
-- KEYS[2]  tracking_index   status by tracking id
-- KEYS[3]  journey_steps    the journey's steps
-- KEYS[4]  order_pending    the journey's numbered steps not sent or dead-lettered yet
-- KEYS[5]  order_waiters    the journey's steps parked for order
-- KEYS[6]  parked           the account's parked jobs (due times)
-- ARGV[1..6] idem_key, step, tracking_id, journey, phone, template_id: the step's identity
--   (identify() in lib/status.lua)
-- ARGV[7]  now_ms
-- ARGV[8]  retention_ms
-- ARGV[9]  reason
-- ARGV[10] code             Zalo's error code ('' if none)
-- Returns how many steps waiting for this one were woken.
local status_hash, tracking_index, journey_steps = KEYS[1], KEYS[2], KEYS[3]
local order_pending, order_waiters, parked = KEYS[4], KEYS[5], KEYS[6]
local idem_key, step, tracking_id = ARGV[1], ARGV[2], ARGV[3]
local journey, phone, template_id = ARGV[4], ARGV[5], ARGV[6]
local now_ms, retention_ms, reason, code = ARGV[7], ARGV[8], ARGV[9], ARGV[10]

advance(status_hash, 'dead_lettered')
identify(status_hash, idem_key, step, tracking_id, journey, phone, template_id,
  'dead_at_ms', now_ms, 'dead_reason', reason, 'dead_code', code, 'updated_at_ms', now_ms)
redis.call('SET', tracking_index, status_hash, 'PX', retention_ms)
redis.call('ZADD', journey_steps, tonumber(step) or 0, status_hash)
keep(retention_ms, status_hash, journey_steps)
return order_done(order_pending, order_waiters, parked, status_hash, now_ms)
