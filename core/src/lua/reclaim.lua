-- Gives the claimed entries of a scheduler that stopped heartbeating back to
-- their outboxes (with their priority), so another scheduler publishes them.
-- An owner is a scheduler id, or `<id>#<window>` for one of its windows in
-- flight; either way the scheduler's heartbeat is `sched:<id>`.
-- ARGV: prefix, owner   Returns: number of entries returned
local scheduler = string.match(ARGV[2], '^([^#]*)')
if redis.call('EXISTS', P .. 'sched:' .. scheduler) == 1 then return 0 end
local claimed = P .. 'claimed:' .. ARGV[2]
local n = 0
for _, key in ipairs(redis.call('LRANGE', claimed, 0, -1)) do
  outbox_add(key)
  n = n + 1
end
redis.call('DEL', claimed)
redis.call('SREM', P .. 'claimants', ARGV[2])
return n
