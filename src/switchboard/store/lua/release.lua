-- Drop one lease (ReservationStore.release); idempotent.
-- KEYS[1] the node's slots sorted set; ARGV[1] holder.
-- Returns 1 if the holder had a live lease, else 0 (an expired lease counts as none).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZREM', KEYS[1], ARGV[1])
