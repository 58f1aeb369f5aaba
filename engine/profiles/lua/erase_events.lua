-- Erasure, one page of an event stream: delete the visitor's entries among the next `count`,
-- and forget those events' ids (so the same ids would be recorded again, as new).
-- Called again from the last id scanned until a page comes back short, so Redis is never
-- blocked for longer than one page (about a millisecond for 1,000 entries), whatever the
-- stream's length.
--
-- KEYS[1]    event stream                          (p13n:{g}:events)
-- KEYS[2..]  the stream shard's seen-id sets        (p13n:{g}:seen:<window>)
-- ARGV       visitor_id, start (a stream id, '-' for the first page, '(<id>' after one), count
-- Returns {entries scanned, last id scanned ('' if none)}.

local entries = redis.call('XRANGE', KEYS[1], ARGV[2], '+', 'COUNT', ARGV[3])
local ids, events = {}, {}
for _, entry in ipairs(entries) do
    local fields = entry[2]
    local visitor, event_id = nil, nil
    for i = 1, #fields, 2 do
        if fields[i] == 'visitor_id' then
            visitor = fields[i + 1]
        elseif fields[i] == 'event_id' then
            event_id = fields[i + 1]
        end
    end
    if visitor == ARGV[1] then
        ids[#ids + 1] = entry[1]
        events[#events + 1] = event_id
    end
end
if #ids > 0 then
    redis.call('XDEL', KEYS[1], unpack(ids))
    for k = 2, #KEYS do
        redis.call('SREM', KEYS[k], unpack(events))
    end
end
local last = ''
if #entries > 0 then
    last = entries[#entries][1]
end
return {#entries, last}
