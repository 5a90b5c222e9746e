-- Hand frames to one instance's inbox, in order, in one atomic step: the Redis Cluster form of
-- cluster_send.lua, where an instance's presence and inbox share the instance's own hash tag
-- and the dead-letter stream lives elsewhere (keys.py).  If the presence key is gone nothing
-- is added and the caller dead-letters the frames (store/cluster.py).
-- KEYS[1]: the target's presence key, KEYS[2]: the target's inbox.
-- ARGV[1]: stream bound; then per frame: kind, node id, origin, frame.
-- Returns 1 (all delivered) or 0 (the target is not present; none delivered).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for a = 2, #ARGV, 4 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*',
    'kind', ARGV[a], 'node', ARGV[a + 1], 'origin', ARGV[a + 2], 'frame', ARGV[a + 3])
end
return 1
