-- Records a batch of submitted tasks. Applying it twice changes nothing: a key
-- that exists is deduplicated (dask's pure=True), and the submitter just watches it;
-- only a cancelled key is replaced by the new submission.
-- A task with a dependency Redis does not know is *deferred* when `defer` is
-- '1': left unrecorded and returned, for the caller to submit again shortly.
-- Clients publish dependent submissions without waiting for each other, and
-- with several schedulers the dependency's batch may still be on its way
-- through another one. With `defer` '0' the task fails with UnknownFuture.
-- ARGV: prefix, reply_to ('' for none), ttl, ntasks, defer ('1' or '0'),
--       eager owner (see eager_head in common.lua; '' claims nothing), then
--       per task: key, func, queue, retries, timeout, priority, delay (ms),
--       at (Unix ms), retry policy (JSON), concurrency key, args-json, ndeps,
--       dep keys...
--       ('' for an option not given)
-- A task with a delay or an `at` records its due time, the later of the two,
-- as `due`: make_queued keeps it `scheduled` until then.
-- A task of function warren:value is a value put as it is (scatter): its args
-- text is the value, and it is recorded finished at once.
-- Returns: { the eager head (common.lua), ndeferred, deferred keys..., events... }
local reply = ARGV[2]
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local defer = ARGV[5] == '1'
local eager_owner = ARGV[6]
local deferred = {}
local i = 7
for _ = 1, n do
  local key, func, queue, retries, timeout = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local priority, delay, at, policy = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local ck, args = ARGV[i + 9], ARGV[i + 10]
  local ndeps = tonumber(ARGV[i + 11])
  local deps = {}
  for d = 1, ndeps do deps[d] = ARGV[i + 11 + d] end
  i = i + 12 + ndeps
  local tk = tkey(key)
  local s = redis.call('HGET', tk, 's')
  local watchers = {}
  if reply ~= '' then watchers = { reply } end
  -- A cancelled key (after restart, as in dask) is submitted afresh.
  if s == 'cancelled' then
    redis.call('DEL', tk)
    s = false
  end
  local unknown_dep = false
  if not s and defer then
    for _, dep in ipairs(deps) do
      if redis.call('EXISTS', tkey(dep)) == 0 then
        unknown_dep = true
        break
      end
    end
  end
  if unknown_dep then
    deferred[#deferred + 1] = key
  elseif s then
    if is_terminal(s) then
      emit(key, s, payload_of(tk, s), watchers)
    elseif reply ~= '' then
      redis.call('SADD', P .. 'w:' .. key, reply)
    end
  elseif func == 'warren:value' then
    -- A value put as it is (scatter): finished at once, `args` its value.
    redis.call('HSET', tk, 'f', func, 'q', queue, 's', 'waiting')
    redis.call('HINCRBY', P .. 'stats', 'submitted', 1)
    redis.call('ZADD', INDEX, 'inf', key)
    if reply ~= '' then redis.call('SADD', P .. 'w:' .. key, reply) end
    finish(key, 'finished', args, ttl)
  else
    -- A failed or cancelled dependency decides the task's fate before it is ever queued.
    local fail, fail_payload = nil, ''
    for _, dep in ipairs(deps) do
      local ds = redis.call('HGET', tkey(dep), 's')
      if not ds then
        fail = 'error'
        fail_payload = cjson.encode({ type = 'UnknownFuture',
          message = 'dependency ' .. dep .. ' is not a known future (never submitted, or expired)',
          traceback = '' })
        break
      elseif ds == 'error' or ds == 'cancelled' then
        fail = ds
        fail_payload = payload_of(tkey(dep), ds)
        break
      end
    end
    redis.call('HSET', tk, 'f', func, 'q', queue, 'a', args, 'deps', table.concat(deps, ' '), 's', 'waiting')
    hold_blobs('a:' .. key, args, ttl)
    if retries ~= '0' then redis.call('HSET', tk, 'r', retries) end
    if timeout ~= '' then redis.call('HSET', tk, 'to', timeout) end
    if priority ~= '0' then redis.call('HSET', tk, 'p', priority) end
    if policy ~= '' then redis.call('HSET', tk, 'rp', policy) end
    if ck ~= '' then redis.call('HSET', tk, 'ck', ck) end
    if delay ~= '' or at ~= '' then
      local due = math.max(now_ms() + (tonumber(delay) or 0), tonumber(at) or 0)
      redis.call('HSET', tk, 'due', string.format('%d', due))
    end
    redis.call('HINCRBY', P .. 'stats', 'submitted', 1)
    redis.call('ZADD', INDEX, 'inf', key)
    redis.call('SADD', P .. 'queues', queue)
    if reply ~= '' then redis.call('SADD', P .. 'w:' .. key, reply) end
    if fail then
      finish(key, fail, fail_payload, ttl)
    else
      local outstanding = 0
      for _, dep in ipairs(deps) do
        -- Counted only when newly added: a repeated dependency counts once.
        if redis.call('HGET', tkey(dep), 's') ~= 'finished'
            and redis.call('SADD', P .. 'd:' .. dep, key) == 1 then
          outstanding = outstanding + 1
        end
      end
      if outstanding == 0 then
        make_queued(key)
      else
        redis.call('HSET', tk, 'n', outstanding)
      end
    end
  end
end
local head = eager_head(eager_owner)
head[#head + 1] = #deferred
for _, k in ipairs(deferred) do head[#head + 1] = k end
for _, v in ipairs(events) do head[#head + 1] = v end
return head
