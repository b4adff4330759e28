-- Forgets final futures: their records, values and sets are deleted now
-- instead of at the end of their TTL. A pending future is not forgotten (cancel
-- it first): something may still be waiting for it.
-- ARGV: prefix, keys...
-- Returns: per key: 'forgotten' | 'pending' | 'unknown'
local out = {}
for i = 2, #ARGV do
  local key = ARGV[i]
  local s = redis.call('HGET', tkey(key), 's')
  if not s then
    out[#out + 1] = 'unknown'
  elseif is_terminal(s) then
    -- Its value's blobs go with it, unless another future holds them too.
    release_blobs('v:' .. key, redis.call('HGET', tkey(key), 'v'), true)
    redis.call('DEL', tkey(key), P .. 'd:' .. key, P .. 'w:' .. key)
    redis.call('ZREM', INDEX, key)
    out[#out + 1] = 'forgotten'
  else
    out[#out + 1] = 'pending'
  end
end
return out
