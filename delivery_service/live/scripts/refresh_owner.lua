-- Keep a connection's ownership of an attempt alive, unless a newer connection took it.
-- KEYS[1] owner key; ARGV[1] connection id, ARGV[2] time-to-live (ms)
-- Returns 1 while the caller owns it (taking it back if it had lapsed), 0 when superseded.
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] or not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
