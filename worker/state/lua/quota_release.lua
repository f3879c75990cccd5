-- uses: quota
-- quota_release.lua: settle a reserved unit whose send reported no quota figure.
-- KEYS[1]  quota hash of the account
-- ARGV[1]  '1' to give the unit back (Zalo surely did not send), '0' to keep it spent
-- Returns the counter after the update, or -1 when the counter is gone (reset or expired).
return settle(KEYS[1], ARGV[1])
