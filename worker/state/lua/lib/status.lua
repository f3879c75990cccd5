-- Step status (worker/state/step_status.py): one hash per step, secondary indexes by msg_id and
-- tracking_id, deliveries that arrive before their send is recorded, and the journey's order
-- bookkeeping. A state only moves forward: a late 'parked' never hides 'sent', 'delivered' is
-- never undone.
local STATUS_RANK = {enqueued = 1, parked = 2, sent = 3, dead_lettered = 3, delivered = 4}

-- advance(st, state): set the step's state unless it is already further along. Returns 1 or 0.
local function advance(st, state)
  local current = redis.call('HGET', st, 'state')
  if current and (STATUS_RANK[current] or 0) > STATUS_RANK[state] then
    return 0
  end
  redis.call('HSET', st, 'state', state)
  return 1
end

-- keep(retention_ms, key...): every status key lives for the retention, counted from its last write.
local function keep(retention_ms, ...)
  for _, key in ipairs({...}) do
    redis.call('PEXPIRE', key, retention_ms)
  end
end

-- merge_early(st, early): fold in a delivery reported before the send was recorded. Returns 1 if any.
local function merge_early(st, early)
  local at = redis.call('HGET', early, 'delivered_at_ms')
  if not at then
    return 0
  end
  redis.call('HSET', st, 'delivered_at_ms', at)
  advance(st, 'delivered')
  redis.call('DEL', early)
  return 1
end

-- wake_waiters(waiters, parked, now_ms): make the journey's steps parked for order due now (the
-- releasers re-enqueue them; each checks its order again). Returns how many were woken.
local function wake_waiters(waiters, parked, now_ms)
  local woken = 0
  for _, id in ipairs(redis.call('SMEMBERS', waiters)) do
    woken = woken + redis.call('ZADD', parked, 'XX', 'CH', now_ms, id)
  end
  redis.call('DEL', waiters)
  return woken
end

-- order_done(pending, waiters, parked, member, now_ms): a numbered step was sent or dead-lettered:
-- higher steps no longer wait for it. Returns how many waiting steps were woken.
local function order_done(pending, waiters, parked, member, now_ms)
  if redis.call('ZREM', pending, member) == 0 then
    return 0
  end
  return wake_waiters(waiters, parked, now_ms)
end

-- identify(st, idem_key, step, tracking_id, journey, phone, template_id, ...): write the step's
-- identity on its status hash, then the field/value pairs that follow, in one HSET. Every script
-- that records a step takes the identity in this order (`step_identity` in
-- worker/state/step_status.py): step '' when the job has no number, phone masked, journey masked
-- when it is the phone.
local function identify(st, idem_key, step, tracking_id, journey, phone, template_id, ...)
  redis.call('HSET', st, 'idempotency_key', idem_key, 'step', step, 'tracking_id', tracking_id,
    'journey', journey, 'phone', phone, 'template_id', template_id, ...)
end
