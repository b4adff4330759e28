-- A worker is about to run a task: the one write a worker makes.
--
-- Counting starts here, not in RabbitMQ, is what keeps KilledWorker honest
-- (dask's allowed-failures): RabbitMQ counts every return of a message,
-- including prefetched messages a dead worker never started; only this script
-- knows a run began. A start that is followed by another start of the same
-- attempt, with no outcome in between, was a run whose worker died.
-- ARGV: prefix, key, attempt
-- Returns: -1 when the task must not start (cancelled, already final, gone, or
-- the message is of an attempt already retried), else the number of starts of
-- this attempt, this one included.
local tk = tkey(ARGV[2])
local attempt = ARGV[3]
local r = redis.call('HMGET', tk, 's', 'at', 'sa', 'sn')
if not r[1] or is_terminal(r[1]) then return -1 end
if tonumber(r[2] or '0') ~= tonumber(attempt) then return -1 end
local n = 1
if r[3] == attempt then n = tonumber(r[4] or '0') + 1 end
redis.call('HSET', tk, 'sa', attempt, 'sn', n)
return n
