-- uses: status
-- status_delivered.lua: Zalo reported a delivery (webhook). Record it on the step sent with that
-- msg_id; a delivery for a msg_id not recorded yet (the webhook beat our own record) is kept and
-- merged by finish_sent.lua. The step's status hash is named by the msg_id index; it shares the
-- account's hash tag with KEYS, so the script stays on one Redis Cluster slot.
-- KEYS[1] msg_index      status by msg_id
-- KEYS[2] early_hash     the delivery, kept until its send is recorded
-- ARGV[1] delivered_at_ms
-- ARGV[2] tracking_id    '' if none
-- ARGV[3] now_ms
-- ARGV[4] retention_ms
-- ARGV[5] early_ttl_ms   how long a delivery waits for its send to be recorded
-- Returns 'recorded' | 'early' | 'duplicate'
local msg_index, early_hash = KEYS[1], KEYS[2]
local delivered_at_ms, tracking_id, now_ms = ARGV[1], ARGV[2], ARGV[3]
local retention_ms, early_ttl_ms = ARGV[4], ARGV[5]

local status_hash = redis.call('GET', msg_index)
if not status_hash then
  if redis.call('HSETNX', early_hash, 'delivered_at_ms', delivered_at_ms) == 0 then
    return 'duplicate'
  end
  redis.call('HSET', early_hash, 'tracking_id', tracking_id)
  redis.call('PEXPIRE', early_hash, early_ttl_ms)
  return 'early'
end
if redis.call('HSETNX', status_hash, 'delivered_at_ms', delivered_at_ms) == 0 then
  return 'duplicate'
end
redis.call('HSET', status_hash, 'updated_at_ms', now_ms)
advance(status_hash, 'delivered')
keep(retention_ms, status_hash)
return 'recorded'
