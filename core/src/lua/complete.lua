-- Applies worker reports. Each transition happens at most once: a report for a
-- task that is already terminal (a redelivered duplicate) is a no-op.
-- ARGV: prefix, ttl, eager owner, n, then per report: key, kind, payload,
--       attempt, draw (in [0, 1): a retry pause's jitter)
--   kind: finished | error | cancelled (payload: value / error JSON / '')
--         failed (the function raised on `attempt`: retried while retries are
--                 left and the task's retry policy `rp` retries its error
--                 type, after the policy's pause; else a final error
--                 carrying every attempt's error)
--         processing (a worker has been running it a while; payload '')
-- ARGV[3], the eager owner: see eager_head (common.lua); '' claims nothing.
-- Returns: { tasks queued, epoch, eager records (0 or 1), the record (see
--            claim_record), events... }
local ttl = tonumber(ARGV[2])
local eager_owner = ARGV[3]
local n = tonumber(ARGV[4])
local i = 5
for _ = 1, n do
  local key, kind, payload, attempt = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local draw = tonumber(ARGV[i + 4]) or 0
  i = i + 5
  if kind == 'processing' then
    local tk = tkey(key)
    if redis.call('HGET', tk, 's') == 'queued' then redis.call('HSET', tk, 's', 'processing') end
  elseif kind == 'failed' then
    local tk = tkey(key)
    local r = redis.call('HMGET', tk, 's', 'r', 'at', 'errs', 'rp')
    local current = tonumber(r[3] or '0')
    -- A failure of an earlier attempt (a redelivered duplicate) is ignored.
    if r[1] and not is_terminal(r[1]) and current == attempt then
      local left = tonumber(r[2] or '0')
      local policy = nil
      if r[5] then
        local ok, p = pcall(cjson.decode, r[5])
        if ok and type(p) == 'table' then policy = p end
      end
      if left > 0 and policy then
        local ok, e = pcall(cjson.decode, payload)
        if not retries_on(policy, ok and type(e) == 'table' and e.type or '') then left = 0 end
      end
      if left > 0 then
        local errs = r[4]
        if errs then errs = string.sub(errs, 1, -2) .. ',' .. payload .. ']' else errs = '[' .. payload .. ']' end
        redis.call('HSET', tk, 'r', left - 1, 'at', current + 1, 'errs', errs)
        -- The next attempt waits for its own rate slot and concurrency slot.
        release_slot(key)
        redis.call('HDEL', tk, 'rs')
        if policy then
          local pause = retry_delay_ms(policy, current, draw)
          if pause > 0 then
            redis.call('HSET', tk, 'due', string.format('%d', now_ms() + pause))
          end
        end
        redis.call('HINCRBY', P .. 'stats', 'retried', 1)
        make_queued(key)
      else
        if r[4] then
          local e = cjson.decode(payload)
          e.previous = cjson.decode(r[4])
          payload = cjson.encode(e)
        end
        finish(key, 'error', payload, ttl)
      end
    end
  else
    finish(key, kind, payload, ttl)
  end
end
local head = eager_head(eager_owner)
for _, v in ipairs(events) do head[#head + 1] = v end
return head
