-- uses: quota
-- quota_rebase.lua: Zalo changed the OA's daily quota (webhook change_oa_daily_quota).
-- KEYS[1] quota_hash     the account's quota counter (remaining, daily, inflight, updated_at_ms)
-- ARGV[1] prev_daily     the daily quota before ('' if the event did not say)
-- ARGV[2] new_daily
-- ARGV[3] expire_at_ms   when the counter expires (the next reset)
-- ARGV[4] now_ms
-- Returns the counter after the update, or -1 when there is none.
local quota_hash = KEYS[1]
local prev_daily, new_daily, expire_at_ms, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

return rebase(quota_hash, prev_daily, new_daily, expire_at_ms, now_ms)
