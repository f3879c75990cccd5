-- broker_inbox_sweep.lua: put a gone consumer's inbox back at the head of its queue, in order.
-- A consumer's blocking move (BLMOVE) takes a message off the queue into its own inbox; its next
-- drain (broker_pop_many.lua) registers it as unacked. A consumer that died, or lost the move's
-- reply and never drained again, leaves the message there: once the inbox has not been drained
-- (nor touched before a move) since `stale_before`, it goes back. Putting back the inbox of a live
-- consumer costs order, never a message or a duplicate: an item is in the inbox or in the queue,
-- and the drain takes it atomically.
-- KEYS[1] inboxes      the registry of inboxes (zset: inbox key -> when last drained or touched, s)
-- KEYS[2] inbox        the inbox (list: the newest item on the left)
-- KEYS[3] queue        the queue it was taken from (kombu takes from the right)
-- ARGV[1] stale_before  seconds: an inbox last seen before this is put back
-- Returns how many messages went back (-1: the inbox was seen since, left alone; -2: the queue key
-- holds something other than a list, so nothing is moved: Redis never rolls a script back, and an
-- RPUSH failing after its LPOP would leave the message with no home).
local inboxes, inbox, queue = KEYS[1], KEYS[2], KEYS[3]
local stale_before = tonumber(ARGV[1])
local seen = redis.call('ZSCORE', inboxes, inbox)
if seen and tonumber(seen) >= stale_before then
  return -1
end
local kind = redis.call('TYPE', queue)['ok']
if kind ~= 'list' and kind ~= 'none' then
  return -2
end
local moved = 0
while true do
  local raw = redis.call('LPOP', inbox)  -- the newest first, so the oldest ends at the head
  if not raw then
    break
  end
  redis.call('RPUSH', queue, raw)
  moved = moved + 1
end
redis.call('ZREM', inboxes, inbox)
return moved
