-- Many choose-and-reserve requests in one atomic step: each is exactly try_reserve.lua, run in
-- order, so a batch means the same as the same calls one after another.
-- KEYS[1]     the nodes set
-- KEYS[2..]   the slots sorted set of every candidate of every request, in request order
-- ARGV[1]     number of requests
-- then per request: holder, lease length in ms, candidate count n,
--                   then n times: node_id, capacity, tier
-- Returns one reply per request: the chosen node id, or '' when no candidate had room.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local a, k = 2, 2
local pruned = {}
for r = 1, tonumber(ARGV[1]) do
  local holder, expiry, n = ARGV[a], now + tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local done, best_key, best_node, best_tier, best_count
  local seen = {}
  for _ = 1, n do
    local key, node = KEYS[k], ARGV[a]
    local capacity, tier = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    k, a = k + 1, a + 3
    if done == nil and not seen[node] then
      seen[node] = true
      if not pruned[key] then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        pruned[key] = true
      end
      if redis.call('ZSCORE', key, holder) then
        redis.call('ZADD', key, 'XX', 'GT', expiry, holder)
        done = node
      else
        local count = redis.call('ZCARD', key)
        if count < capacity and (best_key == nil or tier < best_tier
            or (tier == best_tier and count < best_count)) then
          best_key, best_node, best_tier, best_count = key, node, tier, count
        end
      end
    end
  end
  if done then
    out[r] = done
  elseif best_key then
    redis.call('ZADD', best_key, expiry, holder)
    redis.call('SADD', KEYS[1], best_node)
    out[r] = best_node
  else
    out[r] = ''
  end
end
return out
