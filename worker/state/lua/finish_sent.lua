-- uses: quota, finish, status
-- finish_sent.lua: after Zalo accepted a send, in one round trip: settle its quota unit (and fold
-- in the figure Zalo reported), mark the job sent, record the step's status (indexes by msg_id and
-- tracking_id, a delivery that came early) and let higher steps of its journey go.
-- KEYS[1] idempotency hash   KEYS[2] quota hash        KEYS[3] status hash
-- KEYS[4] msg_id index       KEYS[5] tracking index    KEYS[6] early delivery hash
-- KEYS[7] journey steps      KEYS[8] order pending     KEYS[9] order waiters   KEYS[10] parked
-- ARGV[1] owner   ARGV[2] result json   ARGV[3] retention ms
-- ARGV[4] remainingQuota reported ('' if none)   ARGV[5] dailyQuota ('' if none)
-- ARGV[6] quota expire-at ms   ARGV[7] now ms
-- ARGV[8] idempotency key   ARGV[9] step ('' if none)   ARGV[10] msg_id   ARGV[11] sent_time ms
-- ARGV[12] journey_id   ARGV[13] tracking_id   ARGV[14] journey   ARGV[15] phone (masked)
-- ARGV[16] template id
-- Returns {recorded (1|0), counter, early delivery merged (1|0), order waiters woken}
local counter
if ARGV[4] ~= '' then
  counter = observe(KEYS[2], ARGV[4], ARGV[5], 'sent', ARGV[6], ARGV[7])
else
  counter = settle(KEYS[2], '0')
end
local recorded = finish(KEYS[1], ARGV[1], 'sent', ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], 'idempotency_key', ARGV[8], 'step', ARGV[9], 'msg_id', ARGV[10],
  'sent_at_ms', ARGV[11], 'journey_id', ARGV[12], 'tracking_id', ARGV[13], 'journey', ARGV[14],
  'phone', ARGV[15], 'template_id', ARGV[16], 'updated_at_ms', ARGV[7])
advance(KEYS[3], 'sent')
if ARGV[10] ~= '' then
  redis.call('SET', KEYS[4], KEYS[3], 'PX', ARGV[3])
end
redis.call('SET', KEYS[5], KEYS[3], 'PX', ARGV[3])
local early = merge_early(KEYS[3], KEYS[6])
redis.call('ZADD', KEYS[7], tonumber(ARGV[9]) or 0, KEYS[3])
keep(ARGV[3], KEYS[3], KEYS[7])
local woken = 0
if ARGV[9] ~= '' then
  woken = order_done(KEYS[8], KEYS[9], KEYS[10], KEYS[3], ARGV[7])
end
return {recorded, counter, early, woken}
