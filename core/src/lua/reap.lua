-- Deletes the blobs no record has held for `grace` (see DOOMED in
-- common.lua): a doomed hash whose refs set is still empty loses its Redis
-- blob, and is returned for the caller to delete from the object store. A
-- hash held again since it was doomed is only taken off the doomed list.
-- The grace is for a writer that stored the blob's bytes before the last
-- holder let go, and refers to them after: it has that long to do so.
-- ARGV: prefix, grace (ms), limit (hashes per call)
-- Returns: { hashes doomed long enough (handled), hashes to delete... }
local grace, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', DOOMED, '-inf', now_ms() - grace, 'LIMIT', 0, limit)
local out = { #due }
for _, h in ipairs(due) do
  redis.call('ZREM', DOOMED, h)
  local named = #h == 64 and not string.find(h, '[^0-9a-f]')
  if named and redis.call('EXISTS', P .. 'refs:' .. h) == 0 then
    redis.call('DEL', P .. 'blob:' .. h)
    out[#out + 1] = h
  end
end
return out
