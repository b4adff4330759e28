-- Applies worker reports. Each transition happens at most once: a report for a
-- task that is already terminal (a redelivered duplicate) is a no-op.
-- ARGV: prefix, ttl, n, then per report: key, kind, payload
--   kind: finished | error | cancelled (payload: value / error JSON / '')
--         processing (a worker has been running it a while; payload '')
-- Returns: { tasks queued, events... }
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local i = 4
for _ = 1, n do
  local key, kind, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  i = i + 3
  if kind == 'processing' then
    local tk = tkey(key)
    if redis.call('HGET', tk, 's') == 'queued' then redis.call('HSET', tk, 's', 'processing') end
  else
    finish(key, kind, payload, ttl)
  end
end
table.insert(events, 1, queued)
return events
