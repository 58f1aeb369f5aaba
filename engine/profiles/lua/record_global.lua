-- Global part of recording one event: idempotency, the durable stream, trending.
-- Atomic, so an event id is either fully recorded here or not at all.
--
-- KEYS[1] idempotency marker of the event id   (p13n:{g}:seen:<event_id>)
-- KEYS[2] event stream                          (p13n:{g}:events)
-- KEYS[3] current trending bucket               (p13n:{g}:trending:<bucket>)
-- ARGV    idempotency_ttl, stream_max_events, bucket_ttl,
--         event_id, visitor_id, customer_id ('' if none), item_id, type, ts
-- Returns 1 if the event is new, 0 if its id was seen before (then nothing is written).

if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
    return 0
end

redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
    'event_id', ARGV[4], 'visitor_id', ARGV[5], 'customer_id', ARGV[6],
    'item_id', ARGV[7], 'type', ARGV[8], 'ts', ARGV[9])

redis.call('ZINCRBY', KEYS[3], 1, ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return 1
