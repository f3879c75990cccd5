-- uses: quota, finish
-- finish_sent.lua: after Zalo accepted a send, in one round trip: settle its quota unit (and fold
-- in the figure Zalo reported) and mark the job sent.
-- KEYS[1] idempotency hash   KEYS[2] quota hash
-- ARGV[1] owner   ARGV[2] result json   ARGV[3] retention ms
-- ARGV[4] remainingQuota reported ('' if none)   ARGV[5] dailyQuota ('' if none)
-- ARGV[6] quota expire-at ms   ARGV[7] now ms
-- Returns {recorded (1|0), counter}
local counter
if ARGV[4] ~= '' then
  counter = observe(KEYS[2], ARGV[4], ARGV[5], 'sent', ARGV[6], ARGV[7])
else
  counter = settle(KEYS[2], '0')
end
return {finish(KEYS[1], ARGV[1], 'sent', ARGV[2], ARGV[3]), counter}
