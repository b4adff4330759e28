-- Gives the claimed entries of a scheduler that stopped heartbeating back to the
-- head of the outbox, so another scheduler publishes them.
-- ARGV: prefix, owner   Returns: number of entries returned
if redis.call('EXISTS', P .. 'sched:' .. ARGV[2]) == 1 then return 0 end
local claimed = P .. 'claimed:' .. ARGV[2]
local n = 0
while redis.call('LMOVE', claimed, P .. 'outbox', 'RIGHT', 'LEFT') do n = n + 1 end
return n
