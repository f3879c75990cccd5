-- uses: claim, gates, ratelimit, ttl
-- begin_step.lua: everything a journey step needs from Redis before calling Zalo, in one round
-- trip: claim the job, pass the account gates, keep its place behind the account's lanes, take a
-- rate-limit slot, reserve a quota unit, count it in flight, and read the access token and the
-- journey token. All keys share the account's hash tag.
-- A step that arrives while its account has steps waiting in a lane it may not overtake (any
-- realtime step; for a bulk step, bulk ones too), or, when the cap is enforced for it, while the
-- account has max_in_flight steps in flight, joins the lane instead ('queued'). A step a feeder released from a lane
-- (released_slot_ms not '') leaves the feeder's in-flight entry first (whatever it comes to),
-- skips the lane check and uses the slot the feeder took for it, unless that slot is more than
-- late_ms past or a cool-off holds the account (then it takes a slot as any step does).
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
-- KEYS[10] lane_realtime  the account's realtime lane
-- KEYS[11] lane_bulk     the account's bulk lane
-- KEYS[12] inflight      the account's steps in flight (member: owner, score: deadline ms)
-- KEYS[13] released      the account's released steps not begun yet (member: 'r:' task id)
-- ARGV[1] owner          the claim's owner: a uuid per execution of the step
-- ARGV[2] claim_ttl_ms
-- ARGV[3] floor          quota units kept back
-- ARGV[4] probe          '1': a probe of a paused account (it may pass the pause gate)
-- ARGV[5] emission_us    one send per emission_us (<= 0: no rate limit)
-- ARGV[6] tolerance_us   burst credit
-- ARGV[7] max_wait_ms    the longest rate-limit wait taken
-- ARGV[8] defer          '1': answer token_busy rather than wait while another step is creating
--                        the journey token
-- ARGV[9] lane           'realtime' | 'bulk'
-- ARGV[10] released_slot_ms  '' (not released), else the slot the feeder took ('0': none needed)
-- ARGV[11] released_member   the feeder's in-flight entry for this step ('' if none)
-- ARGV[12] max_in_flight     the account's cap on steps in flight (0: none)
-- ARGV[13] late_ms           how late a released slot may still be used
-- ARGV[14] enforce_cap       '1': refuse the step when the cap is reached; '0': only count it
-- Returns one of:
--   {'token_busy'}                                                          (defer; nothing taken)
--   {'sent', result_json} | {'dead', result_json} | {'busy', pttl_ms}       (nothing taken)
--   {'paused'} | {'template_blocked'} | {'unknown'} | {'exhausted'}         (claim given back;
--    a released step stays counted in flight after 'unknown': it begins again after the probe)
--   {'limited', wait_ms} | {'queued', 'lane' | 'cap'}                       (claim given back)
--   {'ok', remaining, delay_ms, access_token, generation, jt_token, jt_journey_id,
--    jt_created_at_ms, jt_expires_at_ms, slot_at_ms}             (claimed, slot and unit taken)
-- slot_at_ms: the slot on Redis's clock (0: no limit, or no slot taken).
local idem_hash, paused_hash, quota_hash, block_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate_key, cooloff_key, oauth_hash = KEYS[5], KEYS[6], KEYS[7]
local token_hash, token_lock = KEYS[8], KEYS[9]
local owner, claim_ttl_ms, floor, probe = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local emission_us, tolerance_us = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_wait_ms, defer = tonumber(ARGV[7]), ARGV[8]
local lane_realtime, lane_bulk, inflight, released = KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local lane, released_slot_ms, released_member = ARGV[9], ARGV[10], ARGV[11]
local max_in_flight, late_ms, enforce_cap = tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[14]

-- 'lane' | 'cap' when the step must wait in its lane, else nil.
local function must_queue(now_ms)
  if max_in_flight > 0 and enforce_cap == '1' then
    redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now_ms)
    if redis.call('ZCARD', inflight) >= max_in_flight then
      return 'cap'
    end
  end
  if released_slot_ms == '' and (redis.call('LLEN', lane_realtime) > 0
      or (lane == 'bulk' and redis.call('LLEN', lane_bulk) > 0)) then
    return 'lane'
  end
  return nil
end

-- The slot a feeder took for a released step, if it is not too late: {'ok', delay_ms, at_ms}.
local function released_slot(now_ms)
  local at_ms = tonumber(released_slot_ms)
  if at_ms == nil or at_ms <= 0 or at_ms + late_ms < now_ms
      or redis.call('PTTL', cooloff_key) > 0 then
    return nil
  end
  return {'ok', math.max(at_ms - now_ms, 0), at_ms}
end

if released_member ~= '' then
  redis.call('ZREM', inflight, released_member)
  redis.call('ZREM', released, released_member)
end
if defer == '1' and redis.call('EXISTS', token_hash) == 0
    and redis.call('EXISTS', token_lock) == 1 then
  return {'token_busy'}
end
local claimed = claim(idem_hash, owner, claim_ttl_ms)
if claimed[1] ~= 'claimed' then
  return claimed
end
local verdict = gate(paused_hash, quota_hash, block_key, floor, probe)
local now_ms = math.floor(now_us() / 1000)
if verdict ~= 'ok' then
  redis.call('DEL', idem_hash)
  if verdict == 'unknown' and released_member ~= '' and max_in_flight > 0 then
    -- the sender probes the quota (a Zalo call, as slow as Zalo is) and begins again: the step
    -- still holds its thread, so it still counts in flight (the sender removes it if the probe
    -- fails; else the next begin does)
    redis.call('ZADD', inflight, now_ms + tonumber(claim_ttl_ms), released_member)
  end
  return {verdict}
end
local queued = must_queue(now_ms)
if queued then
  redis.call('DEL', idem_hash)
  return {'queued', queued}
end
local jt = redis.call('HMGET', token_hash, 'token', 'journey_id', 'created_at_ms', 'expires_at_ms')
local slot = released_slot(now_ms)
if slot then
  -- the feeder's slot, with or without a journey token
elseif jt[1] or emission_us <= 0 then
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
if max_in_flight > 0 then
  redis.call('ZADD', inflight, now_ms + tonumber(claim_ttl_ms), owner)
  extend_ttl(inflight, tonumber(claim_ttl_ms) * 2)
end
local oauth = redis.call('HMGET', oauth_hash, 'access_token', 'generation')
return {'ok', tostring(remaining), tostring(slot[2]), oauth[1] or '', oauth[2] or '0',
        jt[1] or '', jt[2] or '', jt[3] or '0', jt[4] or '0', tostring(slot[3] or 0)}
