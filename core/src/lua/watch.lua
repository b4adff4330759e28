-- Registers reply queue ARGV[2] as a watcher of each key, or returns its final
-- state if it has one: checking and registering in one step means no event can
-- slip between them.
-- ARGV: prefix, reply_to ('' to only look), keys...
-- Returns: per key: key, state ('unknown' if no such future), payload
local reply = ARGV[2]
local out = {}
for i = 3, #ARGV do
  local key = ARGV[i]
  local tk = tkey(key)
  local s = redis.call('HGET', tk, 's')
  out[#out + 1] = key
  if not s then
    out[#out + 1] = 'unknown'
    out[#out + 1] = ''
  elseif is_terminal(s) then
    out[#out + 1] = s
    out[#out + 1] = payload_of(tk, s)
  else
    if reply ~= '' then redis.call('SADD', P .. 'w:' .. key, reply) end
    out[#out + 1] = s
    out[#out + 1] = ''
  end
end
return out
