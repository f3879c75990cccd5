-- claim(key, owner, ttl_ms): claim a job's idempotency key unless it is finished or held.
-- Returns {'claimed'} | {'sent', result_json} | {'dead', result_json} | {'busy', pttl_ms}
local function claim(key, owner, ttl_ms)
  local state = redis.call('HGET', key, 'state')
  if state == 'sent' then
    return {'sent', redis.call('HGET', key, 'result')}
  end
  if state == 'dead' then
    return {'dead', redis.call('HGET', key, 'result') or ''}
  end
  if state == 'claimed' then
    return {'busy', tostring(redis.call('PTTL', key))}
  end
  redis.call('HSET', key, 'state', 'claimed', 'owner', owner)
  redis.call('PEXPIRE', key, ttl_ms)
  return {'claimed'}
end
