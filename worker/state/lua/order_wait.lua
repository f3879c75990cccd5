-- uses: status
-- order_wait.lua: may this numbered step go, or does a lower step of its journey still have to be
-- sent or dead-lettered? A waiting step is parked here, in the same call, and registered as a
-- waiter of its journey, so the lower step's finish (finish_sent.lua, status_dead.lua) wakes it:
-- no wake-up is lost between the check and the park. Lower steps are those known to exist:
-- recorded by the producer at enqueue, or seen here by a worker first.
-- KEYS[1]  order_pending   the journey's numbered steps not sent or dead-lettered yet
-- KEYS[2]  status_hash     the step's status
-- KEYS[3]  journey_steps   the journey's steps
-- KEYS[4]  order_waiters   the journey's steps parked for order
-- KEYS[5]  parked          the account's parked jobs (due times)
-- KEYS[6]  parked_jobs     the account's parked jobs (parking id -> job json)
-- ARGV[1..6] idem_key, step, tracking_id, journey, phone, template_id: the step's identity
--   (identify() in lib/status.lua; step is a number here), recorded when it parks: a job
--   sent with bare Celery has no enqueue record
-- ARGV[7]  now_ms
-- ARGV[8]  retention_ms
-- ARGV[9]  max_wait_ms     how long the step waits at most, from its first wait
-- ARGV[10] parking_id
-- ARGV[11] job_head        the parked job's json up to its due time
-- ARGV[12] job_tail        the rest of it
-- Returns {'go'} | {'wait', due_ms, lower step} | {'overdue', waited_ms, lower step}
local order_pending, status_hash, journey_steps = KEYS[1], KEYS[2], KEYS[3]
local order_waiters, parked, parked_jobs = KEYS[4], KEYS[5], KEYS[6]
local idem_key, step, tracking_id = ARGV[1], ARGV[2], ARGV[3]
local journey, phone, template_id = ARGV[4], ARGV[5], ARGV[6]
local now_ms, retention_ms, max_wait_ms = ARGV[7], ARGV[8], ARGV[9]
local parking_id, job_head, job_tail = ARGV[10], ARGV[11], ARGV[12]

local state = redis.call('HGET', status_hash, 'state')
if state == 'sent' or state == 'delivered' or state == 'dead_lettered' then
  return {'go'}
end
local number = tonumber(step)
local now = tonumber(now_ms)
redis.call('ZADD', order_pending, number, status_hash)
redis.call('ZADD', journey_steps, number, status_hash)
keep(retention_ms, order_pending, journey_steps)
local lower = redis.call('ZRANGEBYSCORE', order_pending, '-inf', '(' .. number, 'WITHSCORES',
  'LIMIT', 0, 1)
if #lower == 0 then
  -- a later wait (after a replay) starts anew
  redis.call('HDEL', status_hash, 'order_wait_since_ms')
  return {'go'}
end
local since = tonumber(redis.call('HGET', status_hash, 'order_wait_since_ms'))
if not since then
  since = now
  redis.call('HSET', status_hash, 'order_wait_since_ms', since)
  keep(retention_ms, status_hash)
end
local due = since + tonumber(max_wait_ms)
if now >= due then
  return {'overdue', tostring(now - since), lower[2]}
end
local job_json = job_head .. string.format('%.3f', due / 1000) .. job_tail
redis.call('HSET', parked_jobs, parking_id, job_json)
redis.call('ZADD', parked, due, parking_id)
redis.call('SADD', order_waiters, parking_id)
keep(retention_ms, order_waiters)
advance(status_hash, 'parked')
identify(status_hash, idem_key, step, tracking_id, journey, phone, template_id,
  'parked_reason', 'order', 'parked_until_ms', due, 'updated_at_ms', now)
return {'wait', tostring(due), lower[2]}
