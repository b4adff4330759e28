-- Part of restart: cancels every task named in ARGV[3..] (as dask's restart
-- cancels every future), notifying the watchers of pending ones, and drops
-- their dependents and watchers sets. The keys come from the namespace's
-- index, so a restart costs what the namespace holds.
-- ARGV: prefix, ttl, task keys...
-- Returns: { 0, events... }
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV do
  local key = ARGV[i]
  local tk = tkey(key)
  local s = redis.call('HGET', tk, 's')
  if s and not is_terminal(s) then
    finish(key, 'cancelled', '', ttl)
  elseif s then
    redis.call('HSET', tk, 's', 'cancelled')
    local r = redis.call('HMGET', tk, 'v', 'a')
    release_blobs('v:' .. key, r[1], true)
    release_blobs('a:' .. key, r[2], false)
    redis.call('HDEL', tk, 'v', 'e', 'a', 'n')
  else
    -- Expired or forgotten since the index was read.
    redis.call('ZREM', INDEX, key)
  end
  redis.call('DEL', P .. 'd:' .. key, P .. 'w:' .. key)
end
table.insert(events, 1, 0)
return events
