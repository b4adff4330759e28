-- Part of restart: cancels every task record named in ARGV[3..] (as dask's
-- restart cancels every future), notifying the watchers of pending ones.
-- ARGV: prefix, ttl, record keys (full 't:' keys)...
-- Returns: { 0, events... }
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV do
  local tk = ARGV[i]
  local key = string.sub(tk, #P + 3)
  local s = redis.call('HGET', tk, 's')
  if s and not is_terminal(s) then
    finish(key, 'cancelled', '', ttl)
  elseif s then
    redis.call('HSET', tk, 's', 'cancelled')
    redis.call('HDEL', tk, 'v', 'e', 'a', 'n')
  end
end
table.insert(events, 1, 0)
return events
