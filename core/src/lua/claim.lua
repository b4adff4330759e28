-- Claims runnable tasks from the outbox for one scheduler (the transactional
-- outbox): entries move to the scheduler's own claimed list and stay there until
-- their publish is confirmed (then the list is deleted). Entries already claimed
-- and not yet released are returned again first, so a retried call loses nothing.
-- ARGV: prefix, owner, queue, max
-- Returns: { epoch, then per task: key, func, queue, args, attempt, timeout ('' for none),
--            ndeps, (dep, has-value, value)... }
local claimed = P .. 'claimed:' .. ARGV[2]
local outbox = P .. 'outbox:' .. ARGV[3]
local max = tonumber(ARGV[4])
local keys = redis.call('LRANGE', claimed, 0, -1)
if #keys < max then
  -- Highest priority first (lowest score).
  for _, k in ipairs(redis.call('ZRANGE', outbox, 0, max - #keys - 1)) do
    redis.call('ZREM', outbox, k)
    redis.call('RPUSH', claimed, k)
    keys[#keys + 1] = k
  end
end
local out = { redis.call('GET', P .. 'epoch') or '0' }
for _, key in ipairs(keys) do
  local r = redis.call('HMGET', tkey(key), 's', 'f', 'q', 'a', 'deps', 'at', 'to')
  -- Cancelled, finished (a duplicate entry) or expired tasks are not dispatched.
  if r[1] == 'queued' then
    local deps = split_words(r[5])
    out[#out + 1] = key
    out[#out + 1] = r[2]
    out[#out + 1] = r[3]
    out[#out + 1] = r[4] or '[]'
    out[#out + 1] = tonumber(r[6] or '0')
    out[#out + 1] = r[7] or ''
    out[#out + 1] = #deps
    for _, dep in ipairs(deps) do
      local v = redis.call('HGET', tkey(dep), 'v')
      out[#out + 1] = dep
      if v then
        out[#out + 1] = 1
        out[#out + 1] = v
      else
        out[#out + 1] = 0
        out[#out + 1] = ''
      end
    end
  end
end
return out
