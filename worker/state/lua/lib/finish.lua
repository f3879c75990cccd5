-- finish(key, owner, final, result, retention_ms): record a job's final state ('sent' | 'dead')
-- and its result json; owner: the claim's owner, a uuid per execution of the step.
-- 'sent' is the truth once Zalo accepted, so it is recorded even if the claim was lost; the first
-- 'sent' wins. 'dead' is recorded only by the claim's owner and never over 'sent'.
-- Returns 1 when recorded, 0 when left as it was.
local function finish(key, owner, final, result, retention_ms)
  local state = redis.call('HGET', key, 'state')
  if state == 'sent' then
    return 0
  end
  if final == 'dead' and state == 'claimed' and redis.call('HGET', key, 'owner') ~= owner then
    return 0
  end
  redis.call('HSET', key, 'state', final, 'owner', owner, 'result', result)
  redis.call('PEXPIRE', key, retention_ms)
  return 1
end
