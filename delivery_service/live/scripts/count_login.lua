-- Count a login attempt against each of its buckets, before its password is checked, in one
-- step: concurrent guesses cannot all slip through between a check and a count.
-- KEYS: the buckets; ARGV[1] window (ms); ARGV[2..] each bucket's limit, in KEYS order.
-- Returns 0 when the attempt may go ahead (every bucket counted), else the milliseconds until
-- the fullest bucket empties (nothing counted).
local wait = 0
for i, key in ipairs(KEYS) do
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 1 then ttl = tonumber(ARGV[1]) end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
