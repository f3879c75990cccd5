-- uses: finish
-- finish.lua: record a job's final state (see lib/finish.lua).
-- KEYS[1]  idempotency hash of the job
-- ARGV[1]  owner (task id), ARGV[2] final state ('sent' | 'dead'), ARGV[3] result json,
-- ARGV[4]  retention in ms (how long a redelivery is still recognised)
-- Returns 1 when recorded, 0 when left as it was.
return finish(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
