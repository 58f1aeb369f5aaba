-- A visitor's personalization consent: stored unless a later statement is already there.
-- Atomic, so two statements racing (two tabs, a retry) always leave the later one.
--
-- KEYS[1] profile hash   (p13n:{v:<visitor>}:profile)
-- ARGV    given ('1' or '0'), at (epoch seconds, as given), profile_ttl
-- Returns 1 if stored, 0 if ignored as older than the stored statement.

local stored_at = tonumber(redis.call('HGET', KEYS[1], 'consent_at'))
if stored_at and tonumber(ARGV[2]) < stored_at then
    return 0
end
redis.call('HSET', KEYS[1], 'consent', ARGV[1], 'consent_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
