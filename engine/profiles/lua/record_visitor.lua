-- Visitor part of recording one event: recent list, counters, seen times, customer link, bought.
-- Idempotent on its own: a retry after a partial failure (global part done, this part lost or
-- unknown) finds the event id in the recent list and changes nothing.
--
-- KEYS[1] recent list, newest first   (p13n:{v:<visitor>}:recent)
-- KEYS[2] profile hash                (p13n:{v:<visitor>}:profile)
-- KEYS[3] bought set                  (p13n:{v:<visitor>}:bought)
-- ARGV    event_id, item_id, type, ts, customer_id ('' if none), recent_cap, profile_ttl
-- Returns 1 if applied, 0 if the event id was already in the recent list.
--
-- A recent entry is "<event_id> <type> <item_id> <ts>": ids never contain a space
-- (engine.profiles.base.ID_PATTERN), so the split is unambiguous.

local event_id, item_id, etype, ts, customer_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cap = tonumber(ARGV[6])
local ttl = ARGV[7]

local head = event_id .. ' '
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, cap - 1)) do
    if string.sub(entry, 1, #head) == head then
        return 0
    end
end

redis.call('LPUSH', KEYS[1], head .. etype .. ' ' .. item_id .. ' ' .. ts)
redis.call('LTRIM', KEYS[1], 0, cap - 1)
redis.call('HINCRBY', KEYS[2], 'n_' .. etype, 1)

-- Events may arrive out of order: keep the earliest and latest timestamps. The ARGV strings are
-- stored as given, since Lua's number formatting would round them.
local t = tonumber(ts)
local seen = redis.call('HMGET', KEYS[2], 'first_seen', 'last_seen')
local first, last = tonumber(seen[1]), tonumber(seen[2])
if not first or t < first then
    redis.call('HSET', KEYS[2], 'first_seen', ts)
end
if not last or t > last then
    redis.call('HSET', KEYS[2], 'last_seen', ts)
end

-- Login merge: once an event names a customer, the anonymous session belongs to them.
if customer_id ~= '' then
    redis.call('HSET', KEYS[2], 'customer_id', customer_id)
end

if etype == 'purchase' then
    redis.call('SADD', KEYS[3], item_id)
end

redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return 1
