-- Many releases in one step; each is exactly release.lua.
-- KEYS[i] the slots sorted set of lease i; ARGV[i] its holder.
-- Returns per lease 1 if the holder had a live lease, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local pruned = {}
for i = 1, #KEYS do
  if not pruned[KEYS[i]] then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    pruned[KEYS[i]] = true
  end
  out[i] = redis.call('ZREM', KEYS[i], ARGV[i])
end
return out
