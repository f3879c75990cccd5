-- uses: quota, finish, status
-- finish_sent.lua: after Zalo accepted a send, in one round trip: settle its quota unit (and fold
-- in the figure Zalo reported), mark the job sent, record the step's status (indexes by msg_id and
-- tracking_id, a delivery that came early) and let higher steps of its journey go.
-- KEYS[1]  idem_hash        the job's idempotency hash
-- KEYS[2]  quota_hash       the account's quota counter
-- KEYS[3]  status_hash      the step's status
-- KEYS[4]  msg_index        status by msg_id
-- KEYS[5]  tracking_index   status by tracking id
-- KEYS[6]  early_hash       a delivery reported before this record
-- KEYS[7]  journey_steps    the journey's steps
-- KEYS[8]  order_pending    the journey's numbered steps not sent or dead-lettered yet
-- KEYS[9]  order_waiters    the journey's steps parked for order
-- KEYS[10] parked           the account's parked jobs (due times)
-- KEYS[11] inflight         the account's steps in flight (this one leaves)
-- ARGV[1..6] idem_key, step, tracking_id, journey, phone, template_id: the step's identity
--   (identify() in lib/status.lua)
-- ARGV[7]  now_ms
-- ARGV[8]  retention_ms
-- ARGV[9]  owner            the claim's owner: a uuid per execution of the step
-- ARGV[10] result_json      what a redelivery of the job answers
-- ARGV[11] msg_id           Zalo's ('' if none)
-- ARGV[12] sent_at_ms       Zalo's sent_time, else now
-- ARGV[13] journey_id       Zalo's ('' if none)
-- ARGV[14] reported         remainingQuota Zalo reported ('' if none)
-- ARGV[15] daily            dailyQuota Zalo reported ('' if none)
-- ARGV[16] expire_at_ms     when the quota counter expires (the next reset)
-- Returns {recorded (1|0), counter, early delivery merged (1|0), order waiters woken,
--          enqueued_at_ms (as the producer API recorded it; '' if not)}
local idem_hash, quota_hash, status_hash = KEYS[1], KEYS[2], KEYS[3]
local msg_index, tracking_index, early_hash = KEYS[4], KEYS[5], KEYS[6]
local journey_steps, order_pending, order_waiters, parked = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local inflight = KEYS[11]
local idem_key, step, tracking_id = ARGV[1], ARGV[2], ARGV[3]
local journey, phone, template_id = ARGV[4], ARGV[5], ARGV[6]
local now_ms, retention_ms = ARGV[7], ARGV[8]
local owner, result_json = ARGV[9], ARGV[10]
local msg_id, sent_at_ms, journey_id = ARGV[11], ARGV[12], ARGV[13]
local reported, daily, expire_at_ms = ARGV[14], ARGV[15], ARGV[16]

local counter
if reported ~= '' then
  counter = observe(quota_hash, reported, daily, 'sent', expire_at_ms, now_ms)
else
  counter = settle(quota_hash, '0')
end
local recorded = finish(idem_hash, owner, 'sent', result_json, retention_ms)
redis.call('ZREM', inflight, owner)
identify(status_hash, idem_key, step, tracking_id, journey, phone, template_id,
  'msg_id', msg_id, 'sent_at_ms', sent_at_ms, 'journey_id', journey_id, 'updated_at_ms', now_ms)
advance(status_hash, 'sent')
if msg_id ~= '' then
  redis.call('SET', msg_index, status_hash, 'PX', retention_ms)
end
redis.call('SET', tracking_index, status_hash, 'PX', retention_ms)
local early = merge_early(status_hash, early_hash)
redis.call('ZADD', journey_steps, tonumber(step) or 0, status_hash)
keep(retention_ms, status_hash, journey_steps)
local woken = 0
if step ~= '' then
  woken = order_done(order_pending, order_waiters, parked, status_hash, now_ms)
end
return {recorded, counter, early, woken, redis.call('HGET', status_hash, 'enqueued_at_ms') or ''}
