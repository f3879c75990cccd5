-- uses: status
-- status_enqueued.lua: a producer is about to publish a batch of steps (one account's): record
-- each (unless it is already further along), index its tracking id, list it in its journey and,
-- when numbered, in the journey's pending steps. One call per chunk of a batch.
-- KEYS[4i+1..4i+4] status_hash, tracking_index, journey_steps, order_pending: those of the i-th
--   step (i from 0)
-- ARGV[1] now_ms
-- ARGV[2] retention_ms
-- ARGV[7i+3..7i+9] idem_key, step, tracking_id, journey, phone, template_id, task_id: the i-th
--   step's identity (identify() in lib/status.lua) and its Celery task id
-- Returns how many steps are now 'enqueued' (the others were already further along).
local now_ms, retention_ms = ARGV[1], ARGV[2]

local recorded = 0
for i = 0, #KEYS / 4 - 1 do
  local status_hash, tracking_index = KEYS[4 * i + 1], KEYS[4 * i + 2]
  local journey_steps, order_pending = KEYS[4 * i + 3], KEYS[4 * i + 4]
  local a = 7 * i + 2
  local idem_key, step, tracking_id = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local journey, phone, template_id, task_id = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  local current = redis.call('HGET', status_hash, 'state')
  if not current or (STATUS_RANK[current] or 0) <= STATUS_RANK['enqueued'] then
    identify(status_hash, idem_key, step, tracking_id, journey, phone, template_id,
      'state', 'enqueued', 'task_id', task_id, 'enqueued_at_ms', now_ms, 'updated_at_ms', now_ms)
    redis.call('SET', tracking_index, status_hash, 'PX', retention_ms)
    redis.call('ZADD', journey_steps, tonumber(step) or 0, status_hash)
    keep(retention_ms, status_hash, journey_steps)
    if step ~= '' then
      redis.call('ZADD', order_pending, tonumber(step), status_hash)
      keep(retention_ms, order_pending)
    end
    recorded = recorded + 1
  end
end
return recorded
