-- max_field.lua: raise a numeric hash field to a value, never lower it.
-- KEYS[1]  the hash
-- ARGV[1]  field name, ARGV[2] value
-- Returns the field's value after the call.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return current
