-- Cancels futures: each pending key, and (as in dask) everything depending on
-- it, becomes cancelled and its watchers are told. Final futures are left alone.
-- ARGV: prefix, ttl, keys...
-- Returns: { number of keys cancelled, those keys..., events... }
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV do
  finish(ARGV[i], 'cancelled', '', ttl)
end
local out = { #ended }
for _, k in ipairs(ended) do out[#out + 1] = k end
for _, e in ipairs(events) do out[#out + 1] = e end
return out
