-- uses: claim
-- claim.lua: claim a job's idempotency key unless it is finished or held by a live claim.
-- KEYS[1]  idempotency hash of the job
-- ARGV[1]  owner (the task id claiming it)
-- ARGV[2]  claim ttl in ms (outlives the task's hard time limit, so a live claim is never stolen)
-- Returns {"claimed"} | {"sent", result_json} | {"dead", reason} | {"busy", pttl_ms}
return claim(KEYS[1], ARGV[1], ARGV[2])
