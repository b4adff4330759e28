-- Runs one tick of periodic schedule `name` (see core/src/periodic.rs): only
-- if `P schedule_next` still scores the schedule at `tick`, moves it to
-- `next` and, when `run` is '1', records the tick's run as a runnable task
-- (key `key`, no dependencies) in the same atomic step. A second scheduler
-- holding the same due tick finds the score moved and does nothing: each
-- tick runs once, however many schedulers run and whichever of them dies.
-- ARGV: prefix, name, tick, next, run ('1' or '0'), key, func, queue, args,
--       ttl (result_ttl_secs: how long the run's argument blobs are held)
-- Returns: { tasks queued (0 or 1), whether this call ran the tick (0/1) }
local name, tick, nxt = ARGV[2], ARGV[3], ARGV[4]
local run, key, func, queue, args = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local ttl = tonumber(ARGV[10]) or 0
local nk = P .. 'schedule_next'
local score = redis.call('ZSCORE', nk, name)
if not score or tonumber(score) ~= tonumber(tick) then return { 0, 0 } end
redis.call('ZADD', nk, nxt, name)
if run == '1' and not redis.call('HGET', tkey(key), 's') then
  local tk = tkey(key)
  redis.call('HSET', tk, 'f', func, 'q', queue, 'a', args, 'deps', '', 's', 'waiting')
  hold_blobs('a:' .. key, args, ttl)
  redis.call('HINCRBY', P .. 'stats', 'submitted', 1)
  redis.call('ZADD', INDEX, 'inf', key)
  redis.call('SADD', P .. 'queues', queue)
  make_queued(key)
  local runs = P .. 'runs:' .. name
  redis.call('LPUSH', runs, key)
  redis.call('LTRIM', runs, 0, 99)
end
return { queued, 1 }
