-- uses: status
-- status_delivered.lua: Zalo reported a delivery (webhook). Record it on the step sent with that
-- msg_id; a delivery for a msg_id not recorded yet (the webhook beat our own record) is kept and
-- merged by finish_sent.lua. The step's status hash is named by the msg_id index; it shares the
-- account's hash tag with KEYS, so the script stays on one Redis Cluster slot.
-- KEYS[1] msg_id index   KEYS[2] early delivery hash
-- ARGV[1] delivered at ms   ARGV[2] tracking id ('' if none)   ARGV[3] now ms
-- ARGV[4] retention ms      ARGV[5] early delivery ttl ms
-- Returns 'recorded' | 'early' | 'duplicate'
local st = redis.call('GET', KEYS[1])
if not st then
  if redis.call('HSETNX', KEYS[2], 'delivered_at_ms', ARGV[1]) == 0 then
    return 'duplicate'
  end
  redis.call('HSET', KEYS[2], 'tracking_id', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
  return 'early'
end
if redis.call('HSETNX', st, 'delivered_at_ms', ARGV[1]) == 0 then
  return 'duplicate'
end
redis.call('HSET', st, 'updated_at_ms', ARGV[3])
advance(st, 'delivered')
keep(ARGV[4], st)
return 'recorded'
