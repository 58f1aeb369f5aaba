-- Global part of recording a batch of events: idempotency, the durable stream, trending.
-- Atomic, so each event id is either fully recorded here or not at all. Every key carries the
-- {g} hash tag, so one call may take a whole batch and stays in one Redis Cluster slot.
--
-- KEYS[1..n] idempotency marker of each event id   (p13n:{g}:seen:<event_id>)
-- KEYS[n+1]  event stream                           (p13n:{g}:events)
-- KEYS[n+2]  current trending bucket                (p13n:{g}:trending:<bucket>)
-- ARGV       idempotency_ttl, stream_max_events, bucket_ttl, then per event:
--            event_id, visitor_id, customer_id ('' if none), item_id, type, ts
-- Returns one verdict per event, in order: 1 if new, 0 if its id was seen before (then nothing
-- is written for it; a repeat inside the batch is "seen before" too).

local n = #KEYS - 2
local stream, bucket = KEYS[n + 1], KEYS[n + 2]
local ttl, maxlen = ARGV[1], ARGV[2]
local verdicts = {}
local counts = {}
local any = false

for i = 1, n do
    local a = 3 + (i - 1) * 6
    if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
        local item = ARGV[a + 4]
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
            'event_id', ARGV[a + 1], 'visitor_id', ARGV[a + 2], 'customer_id', ARGV[a + 3],
            'item_id', item, 'type', ARGV[a + 5], 'ts', ARGV[a + 6])
        counts[item] = (counts[item] or 0) + 1
        verdicts[i] = 1
        any = true
    else
        verdicts[i] = 0
    end
end

if any then
    for item, count in pairs(counts) do
        redis.call('ZINCRBY', bucket, count, item)
    end
    redis.call('EXPIRE', bucket, ARGV[3])
end
return verdicts
