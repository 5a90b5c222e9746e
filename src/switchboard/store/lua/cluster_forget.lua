-- Forget an instance whose presence has expired (store/cluster.py): drop the nodes it owned
-- (each announced on the change stream), move what its inbox still holds to the dead-letter
-- stream, delete the inbox, and take it off the instance list.  Several survivors may run
-- this for the same instance at once: the second finds nothing left to do.
-- KEYS[1]: its presence key, KEYS[2]: instance list, KEYS[3]: owners hash, KEYS[4]: records
-- hash, KEYS[5]: change stream, KEYS[6]: its inbox, KEYS[7]: dead-letter stream.
-- ARGV[1]: instance id, ARGV[2]: stream bound.
-- Returns {nodes dropped, frames dead-lettered}, or {-1, 0} if the instance is present again.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {-1, 0}
end
local id = ARGV[1]
local dropped = 0
local owners = redis.call('HGETALL', KEYS[3])
for i = 1, #owners, 2 do
  if owners[i + 1] == id then
    redis.call('HDEL', KEYS[3], owners[i])
    redis.call('HDEL', KEYS[4], owners[i])
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*', 'op', 'drop', 'node', owners[i], 'owner', id)
    dropped = dropped + 1
  end
end
local dead = 0
if redis.call('EXISTS', KEYS[6]) == 1 then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[6], '-', '+')) do
    local args = {'XADD', KEYS[7], 'MAXLEN', '~', ARGV[2], '*', 'reason', 'instance_gone', 'to', id}
    for _, value in ipairs(entry[2]) do
      args[#args + 1] = value
    end
    redis.call(unpack(args))
    dead = dead + 1
  end
  redis.call('DEL', KEYS[6])
end
redis.call('ZREM', KEYS[2], id)
return {dropped, dead}
