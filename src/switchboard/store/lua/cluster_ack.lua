-- Acknowledge handled inbox entries and delete them (store/cluster.py): the inbox keeps only
-- what is unread or unacknowledged.
-- KEYS[1]: the inbox; ARGV[1]: the consumer group; ARGV[2..]: entry ids.
-- Returns the number of entries acknowledged.
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return acked
