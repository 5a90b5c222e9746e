-- Extend many leases in one call (ReservationStore.renew).
-- KEYS[i] the slots sorted set of lease i; ARGV[1] lease length in ms; ARGV[1+i] holder of lease i.
-- Only live leases are extended (XX: an expired or released lease is never resurrected), and
-- never shortened (GT).  Returns how many of the leases were live.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local live = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local holder = ARGV[i + 1]
  if redis.call('ZSCORE', key, holder) then
    redis.call('ZADD', key, 'XX', 'GT', expiry, holder)
    live = live + 1
  end
end
return live
