-- Moves delayed tasks whose due time has come (Redis's clock) to their
-- outboxes: every scheduler runs it a few times a second, and running it
-- twice is harmless, so any scheduler that is alive dispatches them on time.
-- An entry whose task is no longer `scheduled` (cancelled, forgotten,
-- restarted) is dropped.
-- ARGV: prefix, max entries to move
-- Returns: { tasks queued, ms until the next due entry (-1: none) }
local max = tonumber(ARGV[2])
local now = now_ms()
for _, key in ipairs(redis.call('ZRANGEBYSCORE', DELAYED, '-inf', now, 'LIMIT', 0, max)) do
  redis.call('ZREM', DELAYED, key)
  if redis.call('HGET', tkey(key), 's') == 'scheduled' then make_queued(key) end
end
local next_due = redis.call('ZRANGE', DELAYED, 0, 0, 'WITHSCORES')
local wait = -1
if #next_due > 0 then wait = math.max(0, tonumber(next_due[2]) - now) end
return { queued, wait }
