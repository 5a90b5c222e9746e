-- Live leases across every node of the namespace (ReservationStore.held_total).
-- KEYS[1] the nodes set; ARGV[1] the slots key prefix (node id is appended).
-- The slots keys are built here rather than passed in, so the total is one atomic read.  That
-- is safe on Redis Cluster because every key of the namespace shares one hash tag (keys.py).
-- Nodes left with no live lease are dropped from the set so it stays small.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. node
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local count = redis.call('ZCARD', key)
  if count == 0 then
    redis.call('SREM', KEYS[1], node)
  end
  total = total + count
end
return total
