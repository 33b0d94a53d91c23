-- A login succeeded: empty its account or device bucket (KEYS[1]) and give its count back to
-- its source bucket (KEYS[2], optional) if that still exists (a DECR of an expired key would
-- leave a -1 that never expires).
redis.call('DEL', KEYS[1])
if KEYS[2] and redis.call('DECR', KEYS[2]) <= 0 then
  redis.call('DEL', KEYS[2])
end
return 0
