-- broker_pop_many.lua: take up to `want` more messages off the broker queues for one consumer and
-- register each as unacked, as kombu's Redis QoS does per message (ZADD index + HSET body), in one
-- round trip. The unacked entry is kombu's own `[message, exchange, routing_key]`, built around
-- the message text as it was (never re-encoded), so kombu's restore reads it unchanged.
-- Redis never rolls a script back, so a message is looked at (LINDEX) before it is taken (RPOP):
-- one that cjson cannot decode (it is stricter than Python's json: a lone surrogate escape such
-- as "\ud800" from a Node producer), or without an ASCII delivery tag and string delivery info,
-- stays at the head of its queue and the batch ends there. kombu's own BRPOP then takes it
-- (worker/messaging/broker.py reads it safely) and Celery's consumer dead-letters it if it
-- cannot run.
-- KEYS[1] unacked_index    kombu's unacked index (zset)
-- KEYS[2] unacked_bodies   kombu's unacked bodies (hash)
-- KEYS[3..] the queue lists, in the order kombu polls them (priority steps, then queues)
-- ARGV[1] want             the most messages to take
-- ARGV[2] now              seconds, float: the index score kombu uses
-- Returns {message, queue key, delivery tag, message, queue key, delivery tag, ...}: the tag each
-- message is registered under, which its ack must name whatever Python makes of the message
local unacked_index, unacked_bodies = KEYS[1], KEYS[2]
local want, now = tonumber(ARGV[1]), ARGV[2]

-- The delivery tag, exchange and routing key of a raw message; nil if it cannot be read safely.
local function envelope(raw)
  local ok, message = pcall(cjson.decode, raw)
  if not ok or type(message) ~= 'table' then
    return nil
  end
  local props = message['properties']
  if type(props) ~= 'table' then
    return nil
  end
  local tag, info = props['delivery_tag'], props['delivery_info']
  if type(tag) ~= 'string' or tag == '' or tag:find('[\128-\255]') then
    return nil  -- kombu's tags are ASCII; anything else is read (and mended) in Python
  end
  if type(info) ~= 'table' then
    return nil  -- a restore needs them: mended in Python
  end
  local exchange, routing_key = info['exchange'], info['routing_key']
  if type(exchange) ~= 'string' or type(routing_key) ~= 'string' then
    return nil
  end
  return tag, cjson.encode(exchange), cjson.encode(routing_key)
end

local out = {}
local taken = 0
for i = 3, #KEYS do
  local queue = KEYS[i]
  while taken < want do
    local raw = redis.call('LINDEX', queue, -1)
    if not raw then
      break
    end
    local tag, exchange, routing_key = envelope(raw)
    if not tag then
      return out  -- left for kombu's own path (see above)
    end
    redis.call('RPOP', queue)
    redis.call('ZADD', unacked_index, now, tag)
    redis.call('HSET', unacked_bodies, tag, '[' .. raw .. ',' .. exchange .. ',' .. routing_key .. ']')
    out[#out + 1] = raw
    out[#out + 1] = queue
    out[#out + 1] = tag
    taken = taken + 1
  end
end
return out
