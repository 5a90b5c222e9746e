-- Live lease counts of one node group's candidates, read before a reservation whose
-- candidates span several groups chooses where to reserve (Redis Cluster; store/groups.py).
-- KEYS[i] the slots sorted set of candidate i; ARGV[i] the holder of the request asking.
-- Returns per candidate its live lease count, or -1 if that holder already has a live lease
-- there (the reservation then renews it, as try_reserve_many does).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local pruned = {}
for i, key in ipairs(KEYS) do
  if not pruned[key] then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    pruned[key] = true
  end
  if redis.call('ZSCORE', key, ARGV[i]) then
    out[i] = -1
  else
    out[i] = redis.call('ZCARD', key)
  end
end
return out
