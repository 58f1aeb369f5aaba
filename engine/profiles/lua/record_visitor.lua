-- Visitor part of recording events: recent list, counters, seen times, customer link, bought.
-- Idempotent on its own: a retry after a partial failure (global part done, this part lost or
-- unknown) finds each event's fingerprint in the recent list and changes nothing.
--
-- One call takes one or more visitors, each with its events in the order they were recorded;
-- a visitor's three keys share its hash tag (one Redis Cluster slot), so a call that carries
-- one visitor is always cluster-safe.
--
-- KEYS[3v+1..3v+3] per visitor: recent list, newest first   (p13n:{v:<visitor>}:recent)
--                               profile hash                (p13n:{v:<visitor>}:profile)
--                               bought set                  (p13n:{v:<visitor>}:bought)
-- ARGV    recent_cap, profile_ttl, then per visitor: the number of its events m, then m times
--         event_id, item_id, type, ts, customer_id ('' if none)
-- Returns one flag per event, in order: 1 if applied, 0 if its fingerprint was already in the
-- visitor's recent list (or earlier in the same call).
--
-- A recent entry is "<fingerprint><type code><item_id> <seconds>", e.g. "kD3_qv5231 17":
-- * fingerprint: 5 characters (30 bits, base64url) of sha1(event_id), computed here so the
--   script needs nothing but the event id to stay idempotent. Two different ids of one visitor
--   collide with probability recent_cap / 2^30 per event (2.8e-8 at 30 entries); a collision
--   skips that event's visitor part only (stream and trending still count it);
-- * type code: v(iew) c(lick) a(dd_to_cart) p(urchase);
-- * item id: never contains a space (engine.profiles.base.ID_PATTERN), so the split is
--   unambiguous;
-- * seconds: whole seconds (floor) relative to the profile's base "t0" (the whole second of the
--   first event the profile recorded), negative for an earlier event arriving late.
-- first_seen and last_seen keep the timestamps exactly as given.

local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
local CODES = {view = 'v', click = 'c', add_to_cart = 'a', purchase = 'p'}
local FP = 5

local function fingerprint(event_id)
    local n = math.floor(tonumber(string.sub(redis.sha1hex(event_id), 1, 8), 16) / 4)
    local out = {}
    for i = FP, 1, -1 do
        local d = n % 64
        out[i] = string.sub(B64, d + 1, d + 1)
        n = (n - d) / 64
    end
    return table.concat(out)
end

local cap = tonumber(ARGV[1])
local ttl = ARGV[2]
local flags = {}
local a = 3

for v = 0, #KEYS / 3 - 1 do
    local recent, profile, bought = KEYS[3 * v + 1], KEYS[3 * v + 2], KEYS[3 * v + 3]
    local m = tonumber(ARGV[a])
    a = a + 1

    local seen = {}
    for _, entry in ipairs(redis.call('LRANGE', recent, 0, cap - 1)) do
        seen[string.sub(entry, 1, FP)] = true
    end
    local stored = redis.call('HMGET', profile, 't0', 'first_seen', 'last_seen')
    local t0 = tonumber(stored[1])
    local new_t0 = not t0
    local first, last = tonumber(stored[2]), tonumber(stored[3])
    local first_s, last_s, customer = nil, nil, nil

    local entries, counts, purchases = {}, {}, {}
    for _ = 1, m do
        local event_id, item_id, etype, ts, customer_id =
            ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
        a = a + 5
        local fp = fingerprint(event_id)
        if seen[fp] then
            flags[#flags + 1] = 0
        else
            seen[fp] = true
            flags[#flags + 1] = 1
            local t = tonumber(ts)
            if not t0 then
                t0 = math.floor(t)
            end
            entries[#entries + 1] =
                fp .. CODES[etype] .. item_id .. ' ' .. string.format('%d', math.floor(t) - t0)
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
        redis.call('LPUSH', recent, unpack(entries, math.max(#entries - cap + 1, 1)))
        redis.call('LTRIM', recent, 0, cap - 1)
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
        for item_id in pairs(purchases) do
            redis.call('SADD', bought, item_id)
        end
        redis.call('EXPIRE', recent, ttl)
        redis.call('EXPIRE', profile, ttl)
        redis.call('EXPIRE', bought, ttl)
    end
end
return flags
