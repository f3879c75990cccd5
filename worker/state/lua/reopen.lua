-- reopen.lua: forget a dead-lettered job's state so a replay can send it; never forget a send.
-- KEYS[1]  idempotency hash of the job
-- Returns 1 when reopened (or nothing was recorded), 0 when the job was sent or is in flight.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'sent' or state == 'claimed' then
  return 0
end
redis.call('DEL', KEYS[1])
return 1
