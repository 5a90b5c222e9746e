-- Forgetting an instance on Redis Cluster (store/cluster.py), the steps under the instance's
-- own hash tag; cluster_forget_view.lua does the rest under the namespace's.
-- KEYS[1]: its presence key, KEYS[2]: its inbox.
-- ARGV[1]: 'read' (first step) or 'delete' (last step).
-- read: returns -1 if the instance is present again, else what its inbox holds (XRANGE).
-- delete: deletes the inbox unless the instance is present again; returns 1 if deleted.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[1] == 'read' then
    return -1
  end
  return 0
end
if ARGV[1] == 'read' then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return {}
  end
  return redis.call('XRANGE', KEYS[2], '-', '+')
end
redis.call('DEL', KEYS[2])
return 1
