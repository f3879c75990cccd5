-- uses: status
-- status_enqueued.lua: a producer is about to publish a batch of steps (one account's): record
-- each (unless it is already further along), index its tracking id, list it in its journey and,
-- when numbered, in the journey's pending steps. One call per chunk of a batch.
-- KEYS[4i+1..4i+4] for the i-th step: status hash, tracking index, journey steps, order pending
-- ARGV[1] now ms   ARGV[2] retention ms
-- ARGV[7i+3..7i+9] for the i-th step: idempotency key, step ('' if none), tracking id, journey,
--                  phone (masked), template id, task id
-- Returns how many steps are now 'enqueued' (the others were already further along).
local recorded = 0
for i = 0, #KEYS / 4 - 1 do
  local st, k, a = KEYS[4 * i + 1], 4 * i, 7 * i + 2
  local current = redis.call('HGET', st, 'state')
  if not current or (STATUS_RANK[current] or 0) <= STATUS_RANK['enqueued'] then
    redis.call('HSET', st, 'state', 'enqueued', 'idempotency_key', ARGV[a + 1], 'step', ARGV[a + 2],
      'tracking_id', ARGV[a + 3], 'journey', ARGV[a + 4], 'phone', ARGV[a + 5],
      'template_id', ARGV[a + 6], 'task_id', ARGV[a + 7], 'enqueued_at_ms', ARGV[1],
      'updated_at_ms', ARGV[1])
    redis.call('SET', KEYS[k + 2], st, 'PX', ARGV[2])
    redis.call('ZADD', KEYS[k + 3], tonumber(ARGV[a + 2]) or 0, st)
    keep(ARGV[2], st, KEYS[k + 3])
    if ARGV[a + 2] ~= '' then
      redis.call('ZADD', KEYS[k + 4], tonumber(ARGV[a + 2]), st)
      keep(ARGV[2], KEYS[k + 4])
    end
    recorded = recorded + 1
  end
end
return recorded
