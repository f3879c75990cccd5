-- reopen.lua: forget a dead-lettered job's state so a replay can send it; never forget a send.
-- KEYS[1] idem_hash   the job's idempotency hash
-- Returns 1 when reopened (or nothing was recorded), 0 when the job was sent or is in flight.
local idem_hash = KEYS[1]

local state = redis.call('HGET', idem_hash, 'state')
if state == 'sent' or state == 'claimed' then
  return 0
end
redis.call('DEL', idem_hash)
return 1
