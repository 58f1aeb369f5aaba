-- A recommendation's read in one command: the visitor's profile keys and the unavailable items.
-- Single server only: the visitor's keys ({v:<visitor>}) and the global set ({g}) are in
-- different Redis Cluster slots, so on a cluster the store sends the four reads as a pipeline.
-- One reply instead of four saves the client most of its per-command cost (packing, parsing,
-- response callbacks), which on the asyncio client exceeds the server's.
--
-- KEYS[1..4]  recent list, profile hash, bought set, unavailable set
-- ARGV[1]     recent_cap
-- Returns {recent entries, profile as a flat field/value list, bought items, unavailable items}.

return {
    redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1),
    redis.call('HGETALL', KEYS[2]),
    redis.call('SMEMBERS', KEYS[3]),
    redis.call('SMEMBERS', KEYS[4]),
}
