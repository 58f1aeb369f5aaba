-- Visitor part of recording events: recent list, counters, seen times, customer link, bought.
-- Idempotent on its own: a retry after a partial failure (global part done, this part lost or
-- unknown) finds each event's entry in the recent list and changes nothing.
--
-- One call takes one or more visitors, each with its events in the order they were recorded;
-- a visitor's three keys share its hash tag (one Redis Cluster slot), so a call that carries
-- one visitor is always cluster-safe.
--
-- KEYS[3v+1..3v+3] per visitor: recent list, newest first   (p13n:{v:<visitor>}:recent)
--                               profile hash                (p13n:{v:<visitor>}:profile)
--                               bought set                  (p13n:{v:<visitor>}:bought)
-- ARGV    recent_cap, profile_ttl, then per visitor: the number of its events m, then m times
--         item_id, type, ts, customer_id ('' if none)
-- Returns one flag per event, in order: 1 if applied, 0 if its entry was already in the
-- visitor's recent list (or earlier in the same call).
--
-- A recent entry is "<type code><item_id> <seconds>", e.g. "v5231 17":
-- * type code: v(iew) c(lick) a(dd_to_cart) p(urchase);
-- * item id: never contains a space (engine.profiles.base.ID_PATTERN), so the split is
--   unambiguous;
-- * seconds: whole seconds (floor) relative to the profile's base "t0" (the whole second of the
--   first event the profile recorded), negative for an earlier event arriving late.
-- The entry is the event's identity here: a retry carries the same event, so LPOS finds its
-- entry (a scan in C, nothing copied into Lua) and the visitor part is applied once. Two events
-- of one type on one item within one second are one entry: a double-fired tag, not two signals.
-- first_seen and last_seen keep the timestamps exactly as given.
--
-- The list is trimmed back to cap once it is half as long again (LTRIM on one event in ten, not
-- on every one; readers and LPOS look at the newest cap entries only).
--
-- The TTLs are refreshed once the recent list's has run down by a thirtieth of profile_ttl (a
-- day of 30): the keys expire between 29/30 of profile_ttl and all of it after the visitor's
-- last event, and most events of an active visitor skip three EXPIREs.

local CODES = {view = 'v', click = 'c', add_to_cart = 'a', purchase = 'p'}

local cap = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local slack = math.floor(ttl / 30)
local flags = {}
local a = 3

for v = 0, #KEYS / 3 - 1 do
    local recent, profile, bought = KEYS[3 * v + 1], KEYS[3 * v + 2], KEYS[3 * v + 3]
    local m = tonumber(ARGV[a])
    a = a + 1

    local stored = redis.call('HMGET', profile, 't0', 'first_seen', 'last_seen')
    local t0 = tonumber(stored[1])
    local new_t0 = not t0
    local first, last = tonumber(stored[2]), tonumber(stored[3])
    local first_s, last_s, customer = nil, nil, nil

    local entries, counts, purchases, here = {}, {}, {}, {}
    for _ = 1, m do
        local item_id, etype, ts, customer_id = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
        a = a + 4
        local t = tonumber(ts)
        if not t0 then
            t0 = math.floor(t)
        end
        local entry = CODES[etype] .. item_id .. ' ' .. string.format('%d', math.floor(t) - t0)
        if here[entry] or redis.call('LPOS', recent, entry, 'MAXLEN', cap) then
            flags[#flags + 1] = 0
        else
            here[entry] = true
            flags[#flags + 1] = 1
            entries[#entries + 1] = entry
            counts[etype] = (counts[etype] or 0) + 1
            -- Events may arrive out of order: keep the earliest and latest timestamps. The
            -- ARGV strings are stored as given, since Lua's number formatting would round them.
            if not first or t < first then
                first, first_s = t, ts
            end
            if not last or t > last then
                last, last_s = t, ts
            end
            -- Login merge: once an event names a customer, the session belongs to them.
            if customer_id ~= '' then
                customer = customer_id
            end
            if etype == 'purchase' then
                purchases[item_id] = true
            end
        end
    end

    if #entries > 0 then
        -- Only the newest cap entries can stay, so at most cap go on the stack for LPUSH.
        local length = redis.call('LPUSH', recent, unpack(entries, math.max(#entries - cap + 1, 1)))
        if length > cap + math.ceil(cap / 2) then
            redis.call('LTRIM', recent, 0, cap - 1)
        end
        for etype, count in pairs(counts) do
            redis.call('HINCRBY', profile, 'n_' .. etype, count)
        end
        local fields = {}
        if new_t0 then
            fields[#fields + 1] = 't0'
            fields[#fields + 1] = string.format('%d', t0)
        end
        if first_s then
            fields[#fields + 1] = 'first_seen'
            fields[#fields + 1] = first_s
        end
        if last_s then
            fields[#fields + 1] = 'last_seen'
            fields[#fields + 1] = last_s
        end
        if customer then
            fields[#fields + 1] = 'customer_id'
            fields[#fields + 1] = customer
        end
        if #fields > 0 then
            redis.call('HSET', profile, unpack(fields))
        end
        local bought_any = next(purchases) ~= nil
        for item_id in pairs(purchases) do
            redis.call('SADD', bought, item_id)
        end
        -- TTL is -1 for the list LPUSH just created: then every key gets its TTL now.
        local left = redis.call('TTL', recent)
        if left < 0 or left < ttl - slack then
            redis.call('EXPIRE', recent, ttl)
            redis.call('EXPIRE', profile, ttl)
            redis.call('EXPIRE', bought, ttl)
        elseif bought_any then
            redis.call('EXPIRE', bought, ttl)
        end
    end
end
return flags
