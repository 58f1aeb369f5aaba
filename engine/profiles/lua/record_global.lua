-- Global part of recording a batch of events: idempotency, the durable stream, trending.
-- Atomic, so each event id is either fully recorded here or not at all. Every key is in one
-- global shard ({g} or {g:<shard>}), so one call may take many events and keeps to one Redis
-- Cluster slot.
--
-- Seen event ids are members of one set per idempotency window (width idempotency_ttl): an id
-- is new unless it is in the current or the previous window's set, so it is remembered for
-- between one and two windows. A set member costs Redis about half of what a key with its own
-- expiry costs (to write, to keep, and to expire later). The set two windows back is unlinked
-- (freed off the main thread) by the first call of a window; its expiry is only a backstop.
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

-- Membership of every id in one command per set, not one per event.
local ids = {}
for a = 4, #ARGV, 6 do
    ids[#ids + 1] = ARGV[a]
end
local in_window = redis.call('SMISMEMBER', seen, unpack(ids))
local in_previous = nil
if redis.call('EXISTS', previous) == 1 then
    in_previous = redis.call('SMISMEMBER', previous, unpack(ids))
end

local verdicts, fresh, counts = {}, {}, {}
local here = {}
for i, event_id in ipairs(ids) do
    if in_window[i] == 1 or here[event_id] or (in_previous and in_previous[i] == 1) then
        verdicts[i] = 0
    else
        here[event_id] = true
        fresh[#fresh + 1] = event_id
        local a = 4 + (i - 1) * 6
        local item = ARGV[a + 3]
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
            'event_id', event_id, 'visitor_id', ARGV[a + 1], 'customer_id', ARGV[a + 2],
            'item_id', item, 'type', ARGV[a + 4], 'ts', ARGV[a + 5])
        counts[item] = (counts[item] or 0) + 1
        verdicts[i] = 1
    end
end

if #fresh > 0 then
    redis.call('SADD', seen, unpack(fresh))
    redis.call('EXPIRE', seen, ARGV[1])
    if redis.call('EXISTS', KEYS[3]) == 1 then
        redis.call('UNLINK', KEYS[3])
    end
    for item, count in pairs(counts) do
        redis.call('ZINCRBY', bucket, count, item)
    end
    redis.call('EXPIRE', bucket, ARGV[3])
end
return verdicts
