-- max_field.lua: raise a numeric hash field to a value, never lower it.
-- KEYS[1] hash
-- ARGV[1] field
-- ARGV[2] value
-- Returns the field's value after the call.
local hash = KEYS[1]
local field, value = ARGV[1], ARGV[2]

local current = tonumber(redis.call('HGET', hash, field) or '-1')
if tonumber(value) > current then
  redis.call('HSET', hash, field, value)
  return tonumber(value)
end
return current
