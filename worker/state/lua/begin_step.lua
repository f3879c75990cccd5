-- uses: claim, gates, ratelimit
-- begin_step.lua: everything a journey step needs from Redis before calling Zalo, in one round
-- trip: claim the job, pass the account gates, take a rate-limit slot, reserve a quota unit, and
-- read the access token and the journey token. All keys share the account's hash tag.
-- With a rate limit and no journey token stored, no slot is taken (delay_ms is -1): the token is
-- made first (a Zalo call of unknown length) and the sender takes its slot just before the send.
-- Taken here, the slot would have passed by then, and late sends would bunch up.
-- KEYS[1] idem_hash      the job's idempotency hash
-- KEYS[2] paused_hash    the account's pause
-- KEYS[3] quota_hash     the account's quota counter
-- KEYS[4] block_key      the template's daily-limit block
-- KEYS[5] rate_key       the account's rate limiter (theoretical arrival time)
-- KEYS[6] cooloff_key    the account's cool-off after a 429
-- KEYS[7] oauth_hash     the account's access token
-- KEYS[8] token_hash     the journey token
-- KEYS[9] token_lock     the journey token's creation lock
-- ARGV[1] owner          the claim's owner: a uuid per execution of the step
-- ARGV[2] claim_ttl_ms
-- ARGV[3] floor          quota units kept back
-- ARGV[4] probe          '1': a probe of a paused account (it may pass the pause gate)
-- ARGV[5] emission_us    one send per emission_us (<= 0: no rate limit)
-- ARGV[6] tolerance_us   burst credit
-- ARGV[7] max_wait_ms    the longest rate-limit wait taken
-- ARGV[8] defer          '1': answer token_busy rather than wait while another step is creating
--                        the journey token
-- Returns one of:
--   {'token_busy'}                                                          (defer; nothing taken)
--   {'sent', result_json} | {'dead', result_json} | {'busy', pttl_ms}       (nothing taken)
--   {'paused'} | {'template_blocked'} | {'unknown'} | {'exhausted'}         (claim given back)
--   {'limited', wait_ms}                                                    (claim given back)
--   {'ok', remaining, delay_ms, access_token, generation, jt_token, jt_journey_id,
--    jt_created_at_ms, jt_expires_at_ms, slot_at_ms}             (claimed, slot and unit taken)
-- slot_at_ms: the slot on Redis's clock (0: no limit, or no slot taken).
local idem_hash, paused_hash, quota_hash, block_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate_key, cooloff_key, oauth_hash = KEYS[5], KEYS[6], KEYS[7]
local token_hash, token_lock = KEYS[8], KEYS[9]
local owner, claim_ttl_ms, floor, probe = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local emission_us, tolerance_us = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_wait_ms, defer = tonumber(ARGV[7]), ARGV[8]

if defer == '1' and redis.call('EXISTS', token_hash) == 0
    and redis.call('EXISTS', token_lock) == 1 then
  return {'token_busy'}
end
local claimed = claim(idem_hash, owner, claim_ttl_ms)
if claimed[1] ~= 'claimed' then
  return claimed
end
local verdict = gate(paused_hash, quota_hash, block_key, floor, probe)
if verdict ~= 'ok' then
  redis.call('DEL', idem_hash)
  return {verdict}
end
local jt = redis.call('HMGET', token_hash, 'token', 'journey_id', 'created_at_ms', 'expires_at_ms')
local slot
if jt[1] or emission_us <= 0 then
  slot = rate_slot(rate_key, cooloff_key, emission_us, tolerance_us, max_wait_ms)
else
  -- No slot yet, but no token made in vain either: refused now if a slot would wait too long.
  local wait = rate_wait(rate_key, cooloff_key, tolerance_us)
  slot = wait > max_wait_ms and {'limited', wait} or {'ok', -1}
end
if slot[1] ~= 'ok' then
  redis.call('DEL', idem_hash)
  return {'limited', tostring(slot[2])}
end
local remaining = reserve_unit(quota_hash)
local oauth = redis.call('HMGET', oauth_hash, 'access_token', 'generation')
return {'ok', tostring(remaining), tostring(slot[2]), oauth[1] or '', oauth[2] or '0',
        jt[1] or '', jt[2] or '', jt[3] or '0', jt[4] or '0', tostring(slot[3] or 0)}
