-- Hand frames to other instances' inboxes (store/cluster.py), in order, in one atomic step.
-- A frame for an instance whose presence key is gone cannot be delivered: it goes to the
-- dead-letter stream instead, and its result is 0.
-- KEYS[1]: dead-letter stream; then per frame i: KEYS[2i]: the target's presence key,
-- KEYS[2i+1]: the target's inbox.
-- ARGV[1]: n, ARGV[2]: stream bound; then per frame: target id, kind, node id, origin, frame.
-- Returns one 1 (delivered) or 0 (dead-lettered) per frame.
local n = tonumber(ARGV[1])
local bound = ARGV[2]
local out = {}
for i = 1, n do
  local a = 2 + (i - 1) * 5
  if redis.call('EXISTS', KEYS[2 * i]) == 1 then
    redis.call('XADD', KEYS[2 * i + 1], 'MAXLEN', '~', bound, '*',
      'kind', ARGV[a + 2], 'node', ARGV[a + 3], 'origin', ARGV[a + 4], 'frame', ARGV[a + 5])
    out[i] = 1
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', bound, '*', 'reason', 'no_instance',
      'to', ARGV[a + 1], 'kind', ARGV[a + 2], 'node', ARGV[a + 3], 'origin', ARGV[a + 4],
      'frame', ARGV[a + 5])
    out[i] = 0
  end
end
return out
