-- Put one node's record in the cluster view and announce it on the change stream (store/cluster.py).
-- KEYS[1]: owners hash, KEYS[2]: records hash, KEYS[3]: change stream (keys.py).
-- ARGV[1]: owning instance id, ARGV[2]: node id, ARGV[3]: the record (JSON), ARGV[4]: stream bound.
-- Returns the change's stream id: readers apply changes in that order, and a reader that
-- starts from a view read at id X needs only the changes after X.
redis.call('HSET', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
  'op', 'put', 'node', ARGV[2], 'owner', ARGV[1], 'record', ARGV[3])
