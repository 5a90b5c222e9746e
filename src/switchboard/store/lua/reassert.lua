-- Make sure the leases of running jobs are held (ReservationStore.reassert_soon): a live lease
-- is extended (never shortened), a lost one is created again.  A lease is lost when Redis lost
-- its data (a restart without persistence, a FLUSHALL) or when it expired while its scheduler
-- could not reach Redis; the job still runs on its node, so the lease must count again before
-- anyone reserves that slot.  A lease is re-created even on a node whose live leases already
-- reach its capacity: the node really runs the job, and every reservation must see that.
-- KEYS[1] the nodes set; KEYS[1+i] the slots sorted set of lease i.
-- ARGV[1] lease length in ms; then per lease: node_id, holder, capacity.
-- Returns {renewed, recreated, over}: over counts the leases re-created on a full node.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local renewed, recreated, over = 0, 0, 0
local pruned = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local a = 2 + (i - 2) * 3
  local node, holder, capacity = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  if not pruned[key] then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    pruned[key] = true
  end
  if redis.call('ZSCORE', key, holder) then
    redis.call('ZADD', key, 'GT', expiry, holder)
    renewed = renewed + 1
  else
    if redis.call('ZCARD', key) >= capacity then
      over = over + 1
    end
    redis.call('ZADD', key, expiry, holder)
    redis.call('SADD', KEYS[1], node)
    recreated = recreated + 1
  end
end
return {renewed, recreated, over}
