-- Choose-and-reserve in one atomic step (ReservationStore.try_reserve).
-- KEYS[1]     the nodes set
-- KEYS[1+i]   the slots sorted set of candidate i (member = holder, score = expiry ms)
-- ARGV[1]     holder
-- ARGV[2]     lease length in ms
-- ARGV[3i..]  per candidate i: node_id, capacity, tier (ARGV[3*i], ARGV[3*i+1], ARGV[3*i+2])
-- Returns the chosen node id, or false (nil to the client) when no candidate has room.
-- Time is Redis server time so that every scheduler sharing this Redis agrees on expiry.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[1]
local expiry = now + tonumber(ARGV[2])

local best, best_tier, best_count
local seen = {}
for i = 1, #KEYS - 1 do
  local key = KEYS[i + 1]
  local node = ARGV[3 * i]
  -- A repeated node keeps its first position, tier and capacity (same as the memory store).
  if not seen[node] then
    seen[node] = true
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    if redis.call('ZSCORE', key, holder) then
      -- Idempotent per holder: renew (never shorten) the lease it already has, even on a node
      -- whose capacity has since been lowered.
      redis.call('ZADD', key, 'XX', 'GT', expiry, holder)
      return node
    end
    local count = redis.call('ZCARD', key)
    local capacity = tonumber(ARGV[3 * i + 1])
    local tier = tonumber(ARGV[3 * i + 2])
    -- Strict comparisons: on a full tie the earlier position (smaller i) stays the best.
    if count < capacity and (best == nil or tier < best_tier
        or (tier == best_tier and count < best_count)) then
      best, best_tier, best_count = i, tier, count
    end
  end
end

if best == nil then
  return false
end
redis.call('ZADD', KEYS[best + 1], expiry, holder)
redis.call('SADD', KEYS[1], ARGV[3 * best])
return ARGV[3 * best]
