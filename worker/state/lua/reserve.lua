-- uses: gates
-- reserve.lua: the account gates before a send, in one round trip.
-- KEYS[1]  paused hash of the account
-- KEYS[2]  quota hash of the account (remaining, daily, inflight)
-- KEYS[3]  template block key (present while the template's daily limit is reached)
-- ARGV[1]  quota units kept back (reserve floor)
-- ARGV[2]  '1' when this job is a probe of a paused account (it may pass the pause gate)
-- Returns {"ok", remaining_after} | {"paused"} | {"template_blocked"} | {"unknown"} | {"exhausted"}
local verdict = gate(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
if verdict ~= 'ok' then
  return {verdict}
end
return {'ok', tostring(reserve_unit(KEYS[2]))}
