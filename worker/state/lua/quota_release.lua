-- uses: quota
-- quota_release.lua: settle a reserved unit whose send reported no quota figure.
-- KEYS[1] quota_hash   the account's quota counter
-- ARGV[1] give_back    '1' to give the unit back (Zalo surely did not send), '0' to keep it spent
-- Returns the counter after the update, or -1 when the counter is gone (reset or expired).
local quota_hash = KEYS[1]
local give_back = ARGV[1]

return settle(quota_hash, give_back)
