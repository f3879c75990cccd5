-- uses: status
-- status_parked.lua: a step waits in the parking lot (quota, night, paused account, ...).
-- KEYS[1]  status_hash      the step's status
-- KEYS[2]  tracking_index   status by tracking id
-- KEYS[3]  journey_steps    the journey's steps
-- ARGV[1..6] idem_key, step, tracking_id, journey, phone, template_id: the step's identity
--   (identify() in lib/status.lua)
-- ARGV[7]  now_ms
-- ARGV[8]  retention_ms
-- ARGV[9]  reason
-- ARGV[10] due_ms           '' while it waits for a resume
-- Returns 1 when recorded, 0 when the step was already further along.
local status_hash, tracking_index, journey_steps = KEYS[1], KEYS[2], KEYS[3]
local idem_key, step, tracking_id = ARGV[1], ARGV[2], ARGV[3]
local journey, phone, template_id = ARGV[4], ARGV[5], ARGV[6]
local now_ms, retention_ms, reason, due_ms = ARGV[7], ARGV[8], ARGV[9], ARGV[10]

if advance(status_hash, 'parked') == 0 then
  return 0
end
identify(status_hash, idem_key, step, tracking_id, journey, phone, template_id,
  'parked_reason', reason, 'parked_until_ms', due_ms, 'updated_at_ms', now_ms)
redis.call('SET', tracking_index, status_hash, 'PX', retention_ms)
redis.call('ZADD', journey_steps, tonumber(step) or 0, status_hash)
keep(retention_ms, status_hash, journey_steps)
return 1
