-- broker_pop_many.lua: take up to ARGV[1] more messages off the broker queues for one consumer and
-- register each as unacked, as kombu's Redis QoS does per message (ZADD index + HSET body), in one
-- round trip. The unacked entry is kombu's own `[message, exchange, routing_key]`, built around
-- the message text as it was (never re-encoded), so kombu's restore reads it unchanged.
-- KEYS[1] unacked index (zset)   KEYS[2] unacked bodies (hash)   KEYS[3..] queue lists, in
-- the order kombu polls them (priority steps, then queues)
-- ARGV[1] most messages to take   ARGV[2] now (seconds, float: the index score kombu uses)
-- Returns {message, queue key, message, queue key, ...}
local out = {}
local want = tonumber(ARGV[1])
local taken = 0
for i = 3, #KEYS do
  while taken < want do
    local raw = redis.call('RPOP', KEYS[i])
    if not raw then
      break
    end
    local props = cjson.decode(raw)['properties']
    local info = props['delivery_info'] or {}
    local tag = props['delivery_tag']
    redis.call('ZADD', KEYS[1], ARGV[2], tag)
    redis.call('HSET', KEYS[2], tag, '[' .. raw .. ',' .. cjson.encode(info['exchange'] or '') ..
      ',' .. cjson.encode(info['routing_key'] or '') .. ']')
    out[#out + 1] = raw
    out[#out + 1] = KEYS[i]
    taken = taken + 1
  end
end
return out
