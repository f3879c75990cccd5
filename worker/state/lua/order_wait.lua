-- uses: status
-- order_wait.lua: may this numbered step go, or does a lower step of its journey still have to be
-- sent or dead-lettered? A waiting step is parked here, in the same call, and registered as a
-- waiter of its journey, so the lower step's finish (finish_sent.lua, status_dead.lua) wakes it:
-- no wake-up is lost between the check and the park. Lower steps are those known to exist:
-- recorded by the producer at enqueue, or seen here by a worker first.
-- KEYS[1] order pending   KEYS[2] status hash   KEYS[3] journey steps   KEYS[4] order waiters
-- KEYS[5] parked sorted set   KEYS[6] parked jobs hash
-- ARGV[1] step   ARGV[2] now ms   ARGV[3] max wait ms   ARGV[4] retention ms   ARGV[5] parking id
-- ARGV[6] parked job json up to its due time   ARGV[7] the rest of it
-- ARGV[8..13] the step's identity: idempotency key, step, tracking id, journey, phone (masked),
-- template id (recorded when it parks: a job sent with bare Celery has no enqueue record)
-- Returns {'go'} | {'wait', due_ms, lower step} | {'overdue', waited ms, lower step}
local state = redis.call('HGET', KEYS[2], 'state')
if state == 'sent' or state == 'delivered' or state == 'dead_lettered' then
  return {'go'}
end
local step = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], step, KEYS[2])
redis.call('ZADD', KEYS[3], step, KEYS[2])
keep(ARGV[4], KEYS[1], KEYS[3])
local lower = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. step, 'WITHSCORES', 'LIMIT', 0, 1)
if #lower == 0 then
  redis.call('HDEL', KEYS[2], 'order_wait_since_ms')  -- a later wait (after a replay) starts anew
  return {'go'}
end
local since = tonumber(redis.call('HGET', KEYS[2], 'order_wait_since_ms'))
if not since then
  since = now
  redis.call('HSET', KEYS[2], 'order_wait_since_ms', since)
  keep(ARGV[4], KEYS[2])
end
local due = since + tonumber(ARGV[3])
if now >= due then
  return {'overdue', tostring(now - since), lower[2]}
end
redis.call('HSET', KEYS[6], ARGV[5], ARGV[6] .. string.format('%.3f', due / 1000) .. ARGV[7])
redis.call('ZADD', KEYS[5], due, ARGV[5])
redis.call('SADD', KEYS[4], ARGV[5])
keep(ARGV[4], KEYS[4])
advance(KEYS[2], 'parked')
identify(KEYS[2], 8)
redis.call('HSET', KEYS[2], 'parked_reason', 'order', 'parked_until_ms', due, 'updated_at_ms', now)
return {'wait', tostring(due), lower[2]}
