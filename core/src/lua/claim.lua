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
if #keys < max then
  -- Highest priority first (lowest score).
  for _, k in ipairs(redis.call('ZRANGE', outbox, 0, max - #keys - 1)) do
    redis.call('ZREM', outbox, k)
    claim_for(ARGV[2], k)
    keys[#keys + 1] = k
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
