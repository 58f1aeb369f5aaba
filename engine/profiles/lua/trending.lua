-- One shard's trending items: sum the window's buckets into a scratch key, read its top.
-- Atomic, so concurrent callers never read each other's scratch key; the scratch key has a
-- short TTL and the sum never crosses the wire, whatever the catalog's size.
--
-- KEYS[1]     scratch key of the sum   (p13n:{g:<shard>}:trending:union)
-- KEYS[2..n]  the window's buckets     (p13n:{g:<shard>}:trending:<bucket>)
-- ARGV        limit, scratch TTL (seconds)
-- Returns the top `limit` items with their counts, flat: item, count, item, count, ...

redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
