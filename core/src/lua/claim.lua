-- Claims runnable tasks from the outbox for one scheduler (the transactional
-- outbox): entries move to the scheduler's own claimed list and stay there until
-- their publish is confirmed (then the list is deleted). Entries already claimed
-- and not yet released are returned again first, so a retried call loses nothing.
-- A claim that returns no task is already released.
-- ARGV: prefix, owner, queue, max
-- Returns: { epoch, then per task the fields of claim_record (common.lua) }
local claimed = P .. 'claimed:' .. ARGV[2]
local outbox = P .. 'outbox:' .. ARGV[3]
local max = tonumber(ARGV[4])
local keys = redis.call('LRANGE', claimed, 0, -1)
-- Highest priority first (lowest score). A task a limit holds back (see
-- gate in common.lua) is parked instead, and the next ones are looked at,
-- up to a bound, so that one throttled function does not stall the queue.
local looked = 0
while #keys < max and looked < 4 * max + 16 do
  local batch = redis.call('ZRANGE', outbox, 0, max - #keys - 1)
  if #batch == 0 then break end
  for _, k in ipairs(batch) do
    looked = looked + 1
    redis.call('ZREM', outbox, k)
    if gate(k) then
      claim_for(ARGV[2], k)
      keys[#keys + 1] = k
    end
  end
end
local out = { redis.call('GET', P .. 'epoch') or '0' }
for _, key in ipairs(keys) do claim_record(key, out) end
-- Nothing to publish: release here, saving the caller a round trip.
if #out == 1 then
  redis.call('DEL', claimed)
  redis.call('SREM', P .. 'claimants', ARGV[2])
end
return out
