-- The periodic schedules whose next tick has come (Redis's clock), for a
-- scheduler to decide and run with tick.lua.
-- ARGV: prefix, max
-- Returns: { now (ms), then per due schedule: name, tick (ms), spec (JSON) }
local now = now_ms()
local out = { now }
local due = redis.call('ZRANGEBYSCORE', P .. 'schedule_next', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
for i = 1, #due, 2 do
  local spec = redis.call('HGET', P .. 'schedules', due[i])
  if spec then
    out[#out + 1] = due[i]
    out[#out + 1] = due[i + 1]
    out[#out + 1] = spec
  else
    -- Removed while due: nothing to run.
    redis.call('ZREM', P .. 'schedule_next', due[i])
  end
end
return out
