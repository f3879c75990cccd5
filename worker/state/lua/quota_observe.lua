-- uses: quota
-- quota_observe.lua: fold a remainingQuota figure reported by Zalo into the shared counter.
-- KEYS[1]  quota hash of the account (remaining, daily, inflight, updated_at_ms)
-- ARGV[1]  remainingQuota reported, ARGV[2] dailyQuota reported ('' if absent),
-- ARGV[3]  mode 'sent' | 'init' | 'set' (see lib/quota.lua), ARGV[4] expire-at ms, ARGV[5] now ms
-- Returns the counter after the update.
return observe(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
