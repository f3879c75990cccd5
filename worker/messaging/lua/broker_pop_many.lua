-- broker_pop_many.lua: take every message in one consumer's inbox (what its blocking move took off
-- a queue), then up to `want` more off the broker queues, and register each as unacked, as kombu's
-- Redis QoS does per message (ZADD index + HSET body), in one round trip; mark the inbox as drained
-- now in the registry of inboxes (broker_inbox_sweep.lua puts back the inboxes of gone consumers).
-- The unacked entry is kombu's own `[message, exchange, routing_key]`, built around the message
-- text as it was (never re-encoded), so kombu's restore reads it unchanged.
-- Redis never rolls a script back, so a message is looked at (LINDEX) before it is taken (RPOP):
-- one that cjson cannot decode (it is stricter than Python's json: a lone surrogate escape such
-- as "\ud800" from a Node producer), or without an ASCII delivery tag and string delivery info,
-- stays at the head of its queue and the batch ends there. The consumer's blocking move then
-- takes it into its inbox (worker/messaging/broker.py reads it safely) and Celery's consumer
-- dead-letters it if it cannot run.
-- An inbox item is always taken: one that cannot be read here comes back with an empty tag, and
-- Python registers it as kombu's BRPOP path does (worker/messaging/broker.py).
-- KEYS[1] unacked_index    kombu's unacked index (zset)
-- KEYS[2] unacked_bodies   kombu's unacked bodies (hash)
-- KEYS[3] inboxes          the registry of inboxes (zset: inbox key -> when last drained, s)
-- KEYS[4..3+n] this consumer's inboxes (lists), one per queue it consumes
-- KEYS[4+n..] the queue lists, in the order kombu polls them (priority steps, then queues)
-- ARGV[1] want             the most messages to take off the queues
-- ARGV[2] now              seconds, float: the index score kombu uses
-- ARGV[3] n                how many inboxes
-- Returns {message, key, delivery tag, message, key, delivery tag, ...}: the key it came from (the
-- inbox's starts with its queue's name) and the tag it is registered under, which its ack must
-- name whatever Python makes of the message ('' for an inbox item left to Python)
local unacked_index, unacked_bodies, inboxes = KEYS[1], KEYS[2], KEYS[3]
local want, now, n = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])

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

local function take(raw, key, tag, exchange, routing_key)
  if tag then
    redis.call('ZADD', unacked_index, now, tag)
    redis.call('HSET', unacked_bodies, tag, '[' .. raw .. ',' .. exchange .. ',' .. routing_key .. ']')
  end
  out[#out + 1] = raw
  out[#out + 1] = key
  out[#out + 1] = tag or ''
  taken = taken + 1
end

for i = 4, 3 + n do
  local inbox = KEYS[i]
  redis.call('ZADD', inboxes, now, inbox)
  while true do
    local raw = redis.call('RPOP', inbox)
    if not raw then
      break
    end
    take(raw, inbox, envelope(raw))
  end
end

for i = 4 + n, #KEYS do
  local queue = KEYS[i]
  while taken < want do
    local raw = redis.call('LINDEX', queue, -1)
    if not raw then
      break
    end
    local tag, exchange, routing_key = envelope(raw)
    if not tag then
      return out  -- left for the blocking move, then read in Python (see above)
    end
    redis.call('RPOP', queue)
    take(raw, queue, tag, exchange, routing_key)
  end
end
return out
