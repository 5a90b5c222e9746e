-- Forgetting an instance on Redis Cluster (store/cluster.py), the step under the namespace's
-- hash tag: drop the nodes it owned (each announced on the change stream), dead-letter what
-- its inbox held (read by cluster_forget_inbox.lua), and take it off the instance list.  Its
-- presence lives in another slot, so "still gone" is checked by its announce score: an
-- instance that announced since the caller read the score (ARGV[3]) is present again.
-- KEYS[1]: instance list, KEYS[2]: owners hash, KEYS[3]: records hash, KEYS[4]: change stream,
-- KEYS[5]: dead-letter stream.
-- ARGV[1]: instance id, ARGV[2]: stream bound, ARGV[3]: its score as read before ('' if none);
-- then per inbox entry: the number of its field values n, then the n values.
-- Returns {nodes dropped, frames dead-lettered}, or {-1, 0} if the instance announced since.
local id = ARGV[1]
local score = redis.call('ZSCORE', KEYS[1], id)
if score and (ARGV[3] == '' or tonumber(score) > tonumber(ARGV[3])) then
  return {-1, 0}
end
local dropped = 0
local owners = redis.call('HGETALL', KEYS[2])
for i = 1, #owners, 2 do
  if owners[i + 1] == id then
    redis.call('HDEL', KEYS[2], owners[i])
    redis.call('HDEL', KEYS[3], owners[i])
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'op', 'drop', 'node', owners[i], 'owner', id)
    dropped = dropped + 1
  end
end
local dead = 0
local a = 4
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local args = {'XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', 'reason', 'instance_gone', 'to', id}
  for j = 1, n do
    args[#args + 1] = ARGV[a + j]
  end
  redis.call(unpack(args))
  dead = dead + 1
  a = a + n + 1
end
redis.call('ZREM', KEYS[1], id)
return {dropped, dead}
