-- uses: claim, gates, ratelimit
-- begin_step.lua: everything a journey step needs from Redis before calling Zalo, in one round
-- trip: claim the job, pass the account gates, take a rate-limit slot, reserve a quota unit, and
-- read the access token and the journey token. All keys share the account's hash tag.
-- KEYS[1] idempotency hash   KEYS[2] paused hash     KEYS[3] quota hash   KEYS[4] template block
-- KEYS[5] rate limiter TAT   KEYS[6] 429 cool-off    KEYS[7] oauth hash   KEYS[8] journey token hash
-- KEYS[9] the journey token's creation lock
-- ARGV[1] owner   ARGV[2] claim ttl ms   ARGV[3] quota floor   ARGV[4] '1' if probe
-- ARGV[5] emission us   ARGV[6] tolerance us   ARGV[7] max rate wait ms
-- ARGV[8] '1': defer rather than wait when another step is creating the journey token
-- Returns one of:
--   {'token_busy'}                                        (ARGV[8] only; nothing taken)
--   {'sent', result} | {'dead', result} | {'busy', pttl_ms}                 (nothing taken)
--   {'paused'} | {'template_blocked'} | {'unknown'} | {'exhausted'}         (claim given back)
--   {'limited', wait_ms}                                                    (claim given back)
--   {'ok', remaining, delay_ms, access_token, generation, jt_token, jt_journey_id,
--    jt_created_at_ms, jt_expires_at_ms, slot_at_ms}             (claimed, slot and unit taken)
-- slot_at_ms: the slot on Redis's clock (0: no limit, or no slot taken).
-- With a rate limit and no journey token stored, no slot is taken (delay_ms is -1): the token is
-- made first (a Zalo call of unknown length) and the sender takes its slot just before the send.
-- Taken here, the slot would have passed by then, and late sends would bunch up.
if ARGV[8] == '1' and redis.call('EXISTS', KEYS[8]) == 0 and redis.call('EXISTS', KEYS[9]) == 1 then
  return {'token_busy'}
end
local claimed = claim(KEYS[1], ARGV[1], ARGV[2])
if claimed[1] ~= 'claimed' then
  return claimed
end
local verdict = gate(KEYS[2], KEYS[3], KEYS[4], ARGV[3], ARGV[4])
if verdict ~= 'ok' then
  redis.call('DEL', KEYS[1])
  return {verdict}
end
local jt = redis.call('HMGET', KEYS[8], 'token', 'journey_id', 'created_at_ms', 'expires_at_ms')
local slot
if jt[1] or tonumber(ARGV[5]) <= 0 then
  slot = rate_slot(KEYS[5], KEYS[6], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
else
  -- No slot yet, but no token made in vain either: refused now if a slot would wait too long.
  local wait = rate_wait(KEYS[5], KEYS[6], tonumber(ARGV[6]))
  slot = wait > tonumber(ARGV[7]) and {'limited', wait} or {'ok', -1}
end
if slot[1] ~= 'ok' then
  redis.call('DEL', KEYS[1])
  return {'limited', tostring(slot[2])}
end
local remaining = reserve_unit(KEYS[3])
local oauth = redis.call('HMGET', KEYS[7], 'access_token', 'generation')
return {'ok', tostring(remaining), tostring(slot[2]), oauth[1] or '', oauth[2] or '0',
        jt[1] or '', jt[2] or '', jt[3] or '0', jt[4] or '0', tostring(slot[3] or 0)}
