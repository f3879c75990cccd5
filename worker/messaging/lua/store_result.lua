-- store_result.lua: Celery's task result write in one round trip (Celery's Redis backend does a GET,
-- then MULTI/SETEX/PUBLISH/EXEC). As Celery does, a stored SUCCESS is never overwritten (a
-- redelivered task must not replace the first result), but here the check and the write are atomic.
-- KEYS[1]  the result key (celery-task-meta-<task id>)
-- ARGV[1]  the result meta, JSON as Celery encodes it   ARGV[2] expiry in seconds (0: none)
-- Returns 1 when stored, 0 when a SUCCESS was already there.
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then
    return 0
  end
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', expires)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
