-- Global part of recording a batch of events: idempotency, the durable stream, trending.
-- Atomic, so each event id is either fully recorded here or not at all. Every key is in one
-- global shard ({g} or {g:<shard>}), so one call may take many events and keeps to one Redis
-- Cluster slot.
--
-- Seen event ids are members of one set per idempotency window (width idempotency_ttl): an id
-- is new unless it is in the current or the previous window's set, so it is remembered for
-- between one and two windows. A set member costs Redis about half of what a key with its own
-- expiry costs (to write, to keep, and to expire later). The set two windows back is unlinked
-- (freed off the main thread) when the window's set is created; its expiry is only a backstop.
--
-- KEYS[1]  ids seen in the current window    (p13n:{g}:seen:<window>)
-- KEYS[2]  ids seen in the previous window   (p13n:{g}:seen:<window - 1>)
-- KEYS[3]  the set two windows back          (p13n:{g}:seen:<window - 2>)
-- KEYS[4]  event stream                      (p13n:{g}:events)
-- KEYS[5]  current trending bucket           (p13n:{g}:trending:<bucket>)
-- ARGV     TTL of the current set (to the end of the window after next), stream_max_events, bucket_ttl, then per
--          event: event_id, visitor_id, customer_id ('' if none), item_id, type, ts
-- Returns one verdict per event, in order: 1 if new, 0 if its id was seen before (then nothing
-- is written for it; a repeat inside the batch is "seen before" too).

local seen, previous, stream, bucket = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local maxlen = ARGV[2]

-- The previous window's membership of every id in one command (zeros if there is no such set).
local ids = {}
for a = 4, #ARGV, 6 do
    ids[#ids + 1] = ARGV[a]
end
local in_previous = redis.call('SMISMEMBER', previous, unpack(ids))

local verdicts, counts = {}, {}
local any = false
for i, event_id in ipairs(ids) do
    -- SADD answers 0 for an id seen in this window, a repeat within the batch included.
    if in_previous[i] == 1 or redis.call('SADD', seen, event_id) == 0 then
        verdicts[i] = 0
    else
        local a = 4 + (i - 1) * 6
        local item = ARGV[a + 3]
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
            'event_id', event_id, 'visitor_id', ARGV[a + 1], 'customer_id', ARGV[a + 2],
            'item_id', item, 'type', ARGV[a + 4], 'ts', ARGV[a + 5])
        counts[item] = (counts[item] or 0) + 1
        verdicts[i] = 1
        any = true
    end
end

if any then
    -- The window's set was just created: give it its expiry, free the one two windows back.
    if redis.call('TTL', seen) == -1 then
        redis.call('EXPIRE', seen, ARGV[1])
        redis.call('UNLINK', KEYS[3])
    end
    for item, count in pairs(counts) do
        redis.call('ZINCRBY', bucket, count, item)
    end
    redis.call('EXPIRE', bucket, ARGV[3])
end
return verdicts
