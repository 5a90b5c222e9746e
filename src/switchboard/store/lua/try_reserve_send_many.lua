-- try_reserve_many.lua with the job_assign handed over in the same atomic step: a request whose
-- candidates include nodes held by other instances carries its frame, and when the node it is
-- granted is one of those, the frame goes to the owner's inbox (cluster_send.lua's fields) or,
-- if the owner's presence is gone, to the dead-letter stream (as cluster_send.lua does).  The
-- choice is try_reserve_many.lua's, line for line (tests/store/test_reserve_send.py compares
-- the two).  One Redis only: on a Redis Cluster the inbox and the lease are in other slots.
-- KEYS[1]     the nodes set
-- KEYS[2]     the dead-letter stream
-- KEYS[3..]   per owner j = 1..m: its presence key (KEYS[1 + 2j]), its inbox (KEYS[2 + 2j])
-- then        the slots sorted set of every candidate of every request, in request order
-- ARGV[1]     number of requests, ARGV[2] stream bound, ARGV[3] origin (this instance),
-- ARGV[4]     the entries' kind, ARGV[5] m, ARGV[6..5+m] the owners' ids
-- then per request: holder, lease length in ms, frame ('' for none), candidate count n,
--                   then n times: node_id, capacity, tier, owner index (0: no handover)
-- Returns two replies per request: the chosen node id ('' when no candidate had room), then
-- 1 (frame handed to the owner), 0 (dead-lettered: owner not present), -1 (not handed: no
-- frame, no node, or a node without owner) or 2 (the holder held the lease on a node with an
-- owner already: this request ran before, a retry after a lost connection, and its frame went
-- then; it is not added twice).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bound, origin, kind = ARGV[2], ARGV[3], ARGV[4]
local m = tonumber(ARGV[5])
local out = {}
local a, k = 6 + m, 3 + 2 * m
local pruned = {}
for r = 1, tonumber(ARGV[1]) do
  local holder, expiry = ARGV[a], now + tonumber(ARGV[a + 1])
  local frame, n = ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  local done, done_owner, best_key, best_node, best_tier, best_count, best_owner
  local seen = {}
  for _ = 1, n do
    local key, node = KEYS[k], ARGV[a]
    local capacity, tier = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    local owner = tonumber(ARGV[a + 3])
    k, a = k + 1, a + 4
    if done == nil and not seen[node] then
      seen[node] = true
      if not pruned[key] then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        pruned[key] = true
      end
      if redis.call('ZSCORE', key, holder) then
        redis.call('ZADD', key, 'XX', 'GT', expiry, holder)
        done, done_owner = node, owner
      else
        local count = redis.call('ZCARD', key)
        if count < capacity and (best_key == nil or tier < best_tier
            or (tier == best_tier and count < best_count)) then
          best_key, best_node, best_tier, best_count = key, node, tier, count
          best_owner = owner
        end
      end
    end
  end
  local status = -1
  if done then
    out[2 * r - 1] = done
    if done_owner > 0 and frame ~= '' then
      status = 2
    end
  elseif best_key then
    redis.call('ZADD', best_key, expiry, holder)
    redis.call('SADD', KEYS[1], best_node)
    out[2 * r - 1] = best_node
    if best_owner > 0 and frame ~= '' then
      if redis.call('EXISTS', KEYS[1 + 2 * best_owner]) == 1 then
        redis.call('XADD', KEYS[2 + 2 * best_owner], 'MAXLEN', '~', bound, '*',
          'kind', kind, 'node', best_node, 'origin', origin, 'frame', frame)
        status = 1
      else
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', bound, '*', 'reason', 'no_instance',
          'to', ARGV[5 + best_owner], 'kind', kind, 'node', best_node, 'origin', origin,
          'frame', frame)
        status = 0
      end
    end
  else
    out[2 * r - 1] = ''
  end
  out[2 * r] = status
end
return out
