-- Claim due expiries: each member is leased to the caller by re-scoring it to now + lease.
-- Whoever runs this gets a member; if it dies before finishing, the lease runs out and another
-- worker claims it. The database transition makes the expiry itself happen exactly once.
-- KEYS[1] deadlines sorted set; ARGV[1] now (ms), ARGV[2] lease (ms), ARGV[3] batch size
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
end
return due
