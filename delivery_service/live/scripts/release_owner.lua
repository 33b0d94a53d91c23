-- Give up ownership only if the caller still holds it.
-- KEYS[1] owner key; ARGV[1] connection id
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
