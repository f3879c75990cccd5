-- uses: finish
-- finish.lua: record a job's final state (see lib/finish.lua).
-- KEYS[1] idem_hash      the job's idempotency hash
-- KEYS[2] inflight       the account's steps in flight (this one leaves)
-- ARGV[1] owner          the claim's owner: a uuid per execution of the step
-- ARGV[2] final          'sent' | 'dead'
-- ARGV[3] result_json    what a redelivery of the job answers
-- ARGV[4] retention_ms   how long a redelivery is still recognised
-- Returns 1 when recorded, 0 when left as it was.
local idem_hash, inflight = KEYS[1], KEYS[2]
local owner, final, result_json, retention_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

redis.call('ZREM', inflight, owner)
return finish(idem_hash, owner, final, result_json, retention_ms)
