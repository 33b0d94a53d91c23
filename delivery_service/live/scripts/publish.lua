-- Append an event to a channel's capped stream and publish it, in one step (DESIGN.md §5).
-- KEYS[1] offset counter, KEYS[2] channel epoch, KEYS[3] stream
-- ARGV[1] pub/sub channel, ARGV[2] event JSON, ARGV[3] stream max length,
-- ARGV[4] key time-to-live in seconds, ARGV[5] epoch to use if the channel has none
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  -- A new channel, or Redis lost it: start a new epoch so clients know their offsets are void.
  epoch = ARGV[5]
  redis.call('DEL', KEYS[1], KEYS[3])
  redis.call('SET', KEYS[2], epoch)
end
local offset = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'e', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
redis.call('PUBLISH', ARGV[1], epoch .. '|' .. offset .. '|' .. ARGV[2])
return {epoch, offset}
