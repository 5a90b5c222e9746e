-- Drop one node from the cluster view, only if the instance asking still owns it: a node that
-- has moved to another instance meanwhile stays (store/cluster.py).
-- KEYS[1]: owners hash, KEYS[2]: records hash, KEYS[3]: change stream.
-- ARGV[1]: instance id, ARGV[2]: node id, ARGV[3]: stream bound.
-- Returns 1 if dropped, 0 if the node was not this instance's.
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'op', 'drop', 'node', ARGV[2], 'owner', ARGV[1])
return 1
