-- Shared helpers, prepended to every warren script (see core/src/store/mod.rs).
-- P is the namespace prefix ("<ns>:"); events collects notifications for clients:
-- per transition: key, state, payload, #watchers, watchers...
local P = ARGV[1]
local events = {}
local queued = 0
-- Keys that reached a final state in this script, in order.
local ended = {}

local function tkey(k) return P .. 't:' .. k end

-- The namespace's index of task records: a sorted set scored by when each
-- record expires (in ms; +inf while pending or kept for ever), so that
-- restart and expiry cost what the namespace holds, never a SCAN of Redis.
local INDEX = P .. 'index'
local now_ms_cached = nil
local function now_ms()
  if not now_ms_cached then
    local t = redis.call('TIME')
    now_ms_cached = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms_cached
end
local function index_expiry(k, ttl)
  if ttl > 0 then
    redis.call('ZADD', INDEX, now_ms() + ttl * 1000, k)
  else
    redis.call('ZADD', INDEX, 'inf', k)
  end
end

-- Moves runnable `key` onto `owner`'s claimed list, and names the owner in
-- the set of claimants that reclaim and restart walk (instead of a SCAN).
local function claim_for(owner, key)
  redis.call('RPUSH', P .. 'claimed:' .. owner, key)
  redis.call('SADD', P .. 'claimants', owner)
end

local function is_terminal(s)
  return s == 'finished' or s == 'error' or s == 'cancelled'
end

-- The payload clients get for a terminal state: the value, the error, or nothing.
local function payload_of(tk, s)
  if s == 'finished' then return redis.call('HGET', tk, 'v') or 'null' end
  if s == 'error' then return redis.call('HGET', tk, 'e') or '{}' end
  return ''
end

local function emit(key, state, payload, watchers)
  if #watchers == 0 then return end
  events[#events + 1] = key
  events[#events + 1] = state
  events[#events + 1] = payload
  events[#events + 1] = #watchers
  for _, w in ipairs(watchers) do events[#events + 1] = w end
end

-- The outbox of work queue q: a sorted set, higher priority first, then FIFO.
-- Scores stay exact in a double: |priority| <= 1e6 (checked by the client)
-- times 2^32, plus a sequence number modulo 2^32.
local function outbox_push(key, q, p)
  local seq = redis.call('INCR', P .. 'seq') % 4294967296
  local score = -tonumber(p or '0') * 4294967296 + seq
  redis.call('ZADD', P .. 'outbox:' .. (q or 'default'), score, key)
end

local function outbox_add(key)
  local r = redis.call('HMGET', tkey(key), 'q', 'p')
  outbox_push(key, r[1], r[2])
end

-- Tasks not to run before their due time wait here, scored by it (ms, Redis's
-- clock), not in RabbitMQ: no visibility timeout or redelivery can run them
-- early or twice. promote.lua moves the due ones to their outboxes.
local DELAYED = P .. 'delayed'

-- Blobs (values that are big or not JSON, see store/blobs.rs) are named by
-- their hash and shared by every record that refers to one. `P refs:<hash>`
-- holds who refers to it: `a:<key>` for a pending task's arguments,
-- `v:<key>` for a future's value. When a future's value is let go of
-- (forgotten, restarted) and no one else holds the blob, the hash is doomed:
-- `P doomed` scores it by when, and reap.lua deletes the blob a grace later
-- unless someone holds it again by then (a writer that stored the same bytes
-- and is about to refer to them).
-- Arguments hold their blobs while a task is pending (so forgetting a future
-- with the same value deletes nothing a task still needs), but letting go
-- of them dooms nothing: a client stores a function once and refers to it
-- in later tasks too, for as long as blobs live (result_ttl_secs). Records
-- that expire never let go: their blobs expire as they do.
local DOOMED = P .. 'doomed'

-- The hashes of the blob references in JSON text `text`. A JSON string
-- holding such text escapes its quotes, so it never matches.
local function blob_hashes(text)
  local out = {}
  if not text then return out end
  for h in string.gmatch(text, '"%$blob"%s*:%s*"(%x+)"') do
    if #h == 64 then out[#out + 1] = h end
  end
  return out
end

-- `holder` ('a:<key>' or 'v:<key>') holds every blob `text` refers to, for
-- `ttl` seconds at most (the life of what holds it; 0: for ever).
local function hold_blobs(holder, text, ttl)
  for _, h in ipairs(blob_hashes(text)) do
    local rk = P .. 'refs:' .. h
    redis.call('SADD', rk, holder)
    if ttl > 0 then redis.call('EXPIRE', rk, ttl) end
  end
end

-- `holder` lets go of every blob `text` refers to; with `doom`, a blob it
-- was the last holder of is doomed. One it never held (a record older than
-- refs) is not.
local function release_blobs(holder, text, doom)
  for _, h in ipairs(blob_hashes(text)) do
    local rk = P .. 'refs:' .. h
    if redis.call('SREM', rk, holder) == 1 and doom and redis.call('SCARD', rk) == 0 then
      redis.call('ZADD', DOOMED, now_ms(), h)
    end
  end
end

-- Keys made runnable by this script, in order.
local queued_keys = {}

-- A task whose dependencies are done runs now, or, when its record names a
-- due time (`due`, ms) still ahead, is `scheduled` until then.
local function make_queued(key)
  local tk = tkey(key)
  local r = redis.call('HMGET', tk, 'q', 'p', 'due')
  -- Only a task with a due time asks Redis for the time.
  if r[3] and tonumber(r[3]) > now_ms() then
    redis.call('HSET', tk, 's', 'scheduled')
    redis.call('ZADD', DELAYED, r[3], key)
    return
  end
  redis.call('HSET', tk, 's', 'queued')
  outbox_push(key, r[1], r[2])
  queued = queued + 1
  queued_keys[#queued_keys + 1] = key
end

-- The pause before retry number `retry` (0 for the first) under policy `p`
-- (a decoded timing::RetryPolicy), `u` the jitter's draw in [0, 1):
-- min(max_delay, delay * backoff^retry), times u with jitter. The same
-- formula as RetryPolicy::delay_ms in core/src/timing.rs.
local function retry_delay_ms(p, retry, u)
  local d = (tonumber(p.delay_ms) or 0) * (tonumber(p.backoff) or 1) ^ retry
  local max = tonumber(p.max_delay_ms) or 600000
  if d > max then d = max end
  if p.jitter == true then d = d * u end
  return math.floor(d)
end

-- Whether policy `p` retries an error of type `kind` (no list: every type).
local function retries_on(p, kind)
  if type(p.on) ~= 'table' or #p.on == 0 then return true end
  for _, name in ipairs(p.on) do
    if name == kind then return true end
  end
  return false
end

-- Global rate limits and concurrency keys (`warren limits`), applied where a
-- task leaves its outbox for a work queue (claim.lua, eager_head), so that
-- tasks beyond a limit wait in Redis, never in a worker's prefetch.
-- `P rate_limits`: 'func:<f>' or 'queue:<q>' -> '<count>/<period ms>'.
-- `P concurrency_limits`: a concurrency key, or a prefix ending in '*' -> max.
local limits_exist = nil
local function any_limits()
  if limits_exist == nil then
    limits_exist = redis.call('EXISTS', P .. 'rate_limits', P .. 'concurrency_limits') > 0
  end
  return limits_exist
end

-- The rate limit of function f or else queue q: count, period (ms), name.
local function rate_limit_of(f, q)
  local names = { 'func:' .. (f or ''), 'queue:' .. (q or '') }
  local specs = redis.call('HMGET', P .. 'rate_limits', names[1], names[2])
  for i = 1, 2 do
    if specs[i] then
      local n, per = string.match(specs[i], '^(%d+)/(%d+)$')
      if n and tonumber(n) > 0 then return tonumber(n), tonumber(per), names[i] end
    end
  end
  return nil
end

-- The most tasks of concurrency key ck that may run at once: its own limit,
-- else the one of the longest matching 'prefix*' pattern, else none.
local function concurrency_limit_of(ck)
  local lk = P .. 'concurrency_limits'
  local exact = redis.call('HGET', lk, ck)
  if exact then return tonumber(exact) end
  local best, best_len = nil, -1
  local all = redis.call('HGETALL', lk)
  for i = 1, #all, 2 do
    local pattern = all[i]
    if string.sub(pattern, -1) == '*' then
      local prefix = string.sub(pattern, 1, -2)
      if #prefix > best_len and string.sub(ck, 1, #prefix) == prefix then
        best, best_len = tonumber(all[i + 1]), #prefix
      end
    end
  end
  return best
end

-- Whether runnable `key`, just taken off its outbox, goes to its work queue
-- now. If not, it is parked. Over a rate limit: scheduled for the slot it
-- reserves (GCRA: each task takes the next free slot, `period/count` apart,
-- so parked tasks wake one at a time, never as a herd). At its concurrency
-- key's limit: at the end of the key's wait list (`P ckwait:<ck>`), which the
-- next task of the key to end pops (release_slot), so a key's tasks run in
-- arrival order. Field `rs` marks a reserved rate slot, `cs` a held
-- concurrency slot: a task passes each gate once per attempt.
local function gate(key)
  if not any_limits() then return true end
  local tk = tkey(key)
  local r = redis.call('HMGET', tk, 'f', 'q', 'ck', 'rs', 'cs', 's')
  -- Cancelled, ended or gone since it was queued: no slot for it (it would
  -- never give it back); claim_record drops it.
  if r[6] ~= 'queued' then return true end
  if not r[4] then
    local n, per, name = rate_limit_of(r[1], r[2])
    if n then
      local now = now_ms()
      local tat_key = P .. 'rate:' .. name
      local slot = math.max(tonumber(redis.call('GET', tat_key) or '0') or 0, now)
      local after = slot + per / n
      redis.call('SET', tat_key, string.format('%.3f', after), 'PX', math.ceil(after - now) + per)
      redis.call('HSET', tk, 'rs', '1')
      if slot > now then
        redis.call('HSET', tk, 'due', string.format('%d', math.ceil(slot)))
        make_queued(key)
        return false
      end
    end
  end
  if r[3] and not r[5] then
    local max = concurrency_limit_of(r[3])
    if max then
      local running = P .. 'running:' .. r[3]
      if (tonumber(redis.call('GET', running) or '0') or 0) >= max then
        redis.call('RPUSH', P .. 'ckwait:' .. r[3], key)
        return false
      end
      redis.call('INCR', running)
      redis.call('HSET', tk, 'cs', '1')
    end
  end
  return true
end

-- Gives back the concurrency slot task `k` holds, if any (`r`: its fields
-- `ck` and `cs` when the caller read them already), and sends as many
-- of its key's waiting tasks (still queued) back to their outbox as the
-- key's limit now has room for: one, or more after the limit was raised,
-- or all of them once it was removed.
local function release_slot(k, r)
  local tk = tkey(k)
  r = r or redis.call('HMGET', tk, 'ck', 'cs')
  if not (r[1] and r[2]) then return end
  redis.call('HDEL', tk, 'cs')
  local running = P .. 'running:' .. r[1]
  local now_running = redis.call('DECR', running)
  if now_running <= 0 then redis.call('DEL', running) end
  local max = concurrency_limit_of(r[1])
  local room = max and (max - math.max(now_running, 0)) or math.huge
  local waiting = P .. 'ckwait:' .. r[1]
  while room > 0 do
    local nxt = redis.call('LPOP', waiting)
    if not nxt then break end
    local nr = redis.call('HMGET', tkey(nxt), 's', 'q', 'p')
    if nr[1] == 'queued' then
      outbox_push(nxt, nr[2], nr[3])
      queued = queued + 1
      room = room - 1
    end
  end
end

-- Moves `key` to a terminal state exactly once, notifies its watchers, and
-- releases its dependents: a finished value counts them down (queueing those
-- that reach zero), an error or cancellation propagates to them, as in dask.
local function finish(key, state, payload, ttl)
  local work = { { key, state, payload } }
  local i = 1
  while i <= #work do
    local k, st, pl = work[i][1], work[i][2], work[i][3]
    i = i + 1
    local tk = tkey(k)
    local fr = redis.call('HMGET', tk, 's', 'ck', 'cs')
    local s = fr[1]
    if s and not is_terminal(s) then
      -- A cancelled delayed task leaves the delayed set now, so that it counts
      -- only tasks still to run.
      if s == 'scheduled' then redis.call('ZREM', DELAYED, k) end
      release_slot(k, { fr[2], fr[3] })
      if st == 'finished' then
        redis.call('HSET', tk, 's', st, 'v', pl)
      elseif st == 'error' then
        redis.call('HSET', tk, 's', st, 'e', pl)
        -- The last 50 errors that started somewhere (not their dependents'
        -- copies), for `warren top`.
        if k == key then
          local ok, e = pcall(cjson.decode, pl)
          if ok and type(e) == 'table' then
            redis.call('LPUSH', P .. 'recent_errors',
              cjson.encode({ key = k, type = e.type, message = e.message }))
            redis.call('LTRIM', P .. 'recent_errors', 0, 49)
          end
        end
      else
        redis.call('HSET', tk, 's', st)
      end
      ended[#ended + 1] = k
      -- The arguments are only needed to run the task; drop them to save
      -- memory, and let go of their blobs.
      if st == 'finished' then hold_blobs('v:' .. k, pl, ttl) end
      release_blobs('a:' .. k, redis.call('HGET', tk, 'a'), false)
      redis.call('HDEL', tk, 'a', 'n', 'errs', 'rp')
      -- Counted once per task: the check above makes every transition single.
      redis.call('HINCRBY', P .. 'stats', st, 1)
      if ttl > 0 then redis.call('EXPIRE', tk, ttl) end
      index_expiry(k, ttl)
      local wk = P .. 'w:' .. k
      emit(k, st, pl, redis.call('SMEMBERS', wk))
      redis.call('DEL', wk)
      local dk = P .. 'd:' .. k
      for _, d in ipairs(redis.call('SMEMBERS', dk)) do
        if st == 'finished' then
          local dtk = tkey(d)
          if redis.call('HGET', dtk, 's') == 'waiting' then
            if redis.call('HINCRBY', dtk, 'n', -1) <= 0 then make_queued(d) end
          end
        else
          work[#work + 1] = { d, st, pl }
        end
      end
      redis.call('DEL', dk)
    end
  end
end

local function split_words(s)
  local out = {}
  if s then for w in string.gmatch(s, '%S+') do out[#out + 1] = w end end
  return out
end

-- Appends what a scheduler needs to publish claimed task `key` to `out`, if
-- the task is still `queued` (cancelled, finished or expired ones are not
-- dispatched): key, func, queue, args, attempt, timeout ('' for none),
-- priority, ndeps, then (dep, has-value, value) per dependency. Returns
-- whether it did.
local function claim_record(key, out)
  local r = redis.call('HMGET', tkey(key), 's', 'f', 'q', 'a', 'deps', 'at', 'to', 'p')
  if r[1] ~= 'queued' then return false end
  local deps = split_words(r[5])
  out[#out + 1] = key
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
  out[#out + 1] = r[4] or '[]'
  out[#out + 1] = tonumber(r[6] or '0')
  out[#out + 1] = r[7] or ''
  out[#out + 1] = tonumber(r[8] or '0')
  out[#out + 1] = #deps
  for _, dep in ipairs(deps) do
    local v = redis.call('HGET', tkey(dep), 'v')
    out[#out + 1] = dep
    if v then
      out[#out + 1] = 1
      out[#out + 1] = v
    else
      out[#out + 1] = 0
      out[#out + 1] = ''
    end
  end
  return true
end

-- The head of the reply of a script that makes tasks runnable:
-- { tasks queued, epoch, eager records (0 or 1), the record (claim_record)... }.
-- When `owner` is not '' and the script made exactly one task runnable while
-- its queue's outbox holds nothing else (a lone submit, the next link of a
-- chain), that task is claimed here for `owner`, as claim.lua would, so the
-- scheduler publishes it without waking its dispatcher for another round trip.
-- Only an empty outbox allows it: then nothing waits that a priority or the
-- work queue's backlog limit should put first.
local function eager_head(owner)
  local eager = {}
  if owner ~= '' and #queued_keys == 1 then
    local key = queued_keys[1]
    local outbox = P .. 'outbox:' .. (redis.call('HGET', tkey(key), 'q') or 'default')
    if redis.call('ZCARD', outbox) == 1 and redis.call('ZREM', outbox, key) == 1
        and gate(key) then
      claim_for(owner, key)
      claim_record(key, eager)
    end
  end
  local head = { queued, redis.call('GET', P .. 'epoch') or '0', #eager > 0 and 1 or 0 }
  for _, v in ipairs(eager) do head[#head + 1] = v end
  return head
end
