-- Store the shared pool configuration (store/redis_pool_config.py) with its next revision.
-- KEYS[1]: the pools key (keys.py).  ARGV[1]: the pools, a JSON array (already checked by the
-- pool parser).  ARGV[2]: "put" replaces whatever is stored; "seed" writes only when nothing
-- is, so a start-up seeding from the config file loses to any configuration already there,
-- another instance's seed of a moment ago included.
-- Returns {1, value} when it wrote, {0, value} when a seed found a configuration; value is
-- what the key holds afterwards: {"revision": n, "pools": [...]}.
local current = redis.call('GET', KEYS[1])
if current and ARGV[2] == 'seed' then
  return {0, current}
end
local revision = 0
if current then
  -- A value that does not decode (written by hand) restarts the count rather than failing
  -- the operator's PUT that replaces it.
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and type(decoded['revision']) == 'number' then
    revision = math.floor(decoded['revision'])
  end
end
local value = string.format('{"revision":%d,"pools":%s}', revision + 1, ARGV[1])
redis.call('SET', KEYS[1], value)
return {1, value}
