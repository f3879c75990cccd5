-- store_result.lua: Celery's task result write in one round trip (Celery's Redis backend does a GET,
-- then MULTI/SETEX/PUBLISH/EXEC). As Celery does, a stored SUCCESS is never overwritten (a
-- redelivered task must not replace the first result), but here the check and the write are atomic.
-- KEYS[1] result_key   celery-task-meta-<task id>
-- ARGV[1] meta_json    the result meta, as Celery encodes it
-- ARGV[2] expires_s    the expiry in seconds (0: none)
-- Returns 1 when stored, 0 when a SUCCESS was already there.
local result_key = KEYS[1]
local meta_json, expires_s = ARGV[1], tonumber(ARGV[2])

local current = redis.call('GET', result_key)
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
if expires_s > 0 then
  redis.call('SET', result_key, meta_json, 'EX', expires_s)
else
  redis.call('SET', result_key, meta_json)
end
redis.call('PUBLISH', result_key, meta_json)
return 1
