-- uses: quota
-- quota_rebase.lua: Zalo changed the OA's daily quota (webhook change_oa_daily_quota).
-- KEYS[1]  quota hash of the account (remaining, daily, inflight, updated_at_ms)
-- ARGV[1]  previous daily quota ('' if the event did not say), ARGV[2] new daily quota,
-- ARGV[3]  expire-at ms (the next reset), ARGV[4] now ms
-- Returns the counter after the update, or -1 when there is none.
return rebase(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
