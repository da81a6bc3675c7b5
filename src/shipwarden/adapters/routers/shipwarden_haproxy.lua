-- shipwarden per-version metrics inside HAProxy (HaproxyRouter).
--
-- Routing itself needs no Lua: the frontend picks a version slot from a range map
-- (rand(100) -> slot) that the Runtime API replaces atomically.  Lua only counts, because
-- HAProxy's own counters are per server and per backend (a slot changes version over time)
-- and it has no latency histograms, which the canary judge needs.
--
-- The state is one Lua state shared by all threads (`lua-load`, not `lua-load-per-thread`),
-- so counters need no merging; each action holds the Lua lock for a few microseconds.
-- Exposed in the same Prometheus text as the nginx driver's, so both report alike:
--   shipwarden_router_requests_total{service,route,version,zone,code}
--   shipwarden_router_request_duration_seconds_bucket{service,route,version,zone,le}
-- (zone: the zone pool's slot, "" for a pool without a zone and for the 503 of no pool)
-- Counted is every response the route's frontend sends, as nginx's log phase counts them:
-- an instance's answer, and the answers HAProxy gives itself — 502/503/504 when every
-- instance of the version drawn failed after the retries (counted for that version), the 503
-- of a route without pools (version "none").  HAProxy 2.6 runs no Lua action in
-- `http-after-response`, the only rule set that sees its own responses, but it evaluates
-- sample fetches there: the counter is the fetch `lua.sw_count`, called by
-- `http-after-response set-var(txn.sw_counted) lua.sw_count`.  A request the client
-- abandons before any response (nginx logs a 499) is not counted.

local BUCKET_BASE, BUCKET_GROWTH, BUCKET_COUNT = 0.001, 1.25, 47
local BUCKETS, BUCKET_LABELS = {}, {}
for i = 1, BUCKET_COUNT do
    BUCKETS[i] = BUCKET_BASE * BUCKET_GROWTH ^ (i - 1)
    BUCKET_LABELS[i] = string.format("%.6g", BUCKETS[i])
end
local LOG_GROWTH = math.log(BUCKET_GROWTH)

local function bucket_index(elapsed)
    if elapsed <= BUCKET_BASE then return 1 end
    local i = math.ceil(math.log(elapsed / BUCKET_BASE) / LOG_GROWTH) + 1
    if i > BUCKET_COUNT + 1 then i = BUCKET_COUNT + 1 end
    while i > 1 and elapsed <= BUCKETS[i - 1] do i = i - 1 end
    while i <= BUCKET_COUNT and elapsed > BUCKETS[i] do i = i + 1 end
    return i
end

local NOZONE = "~"    -- a pool without a zone, in the keys (an empty field would vanish in a split)
local requests = {}   -- "service\troute\tversion\tzone\tcode" -> count
local hist = {}       -- "service\troute\tversion\tzone" -> { counts = {}, sum = 0 }
local retries_base = {}  -- "service\troute" -> retries counted before the last reload

-- Extra attempts per route (HAProxy's own counters of the route's slot backends: retries on the
-- same instance and redispatches to another), as nginx's balancer counts them.
local function retries()
    local out = {}
    for key, n in pairs(retries_base) do out[key] = n end
    for name, be in pairs(core.backends) do
        local service, route = name:match("^be_(.+)_(%a+)_s%d+$")
        if service then
            local st = be:get_stats()
            local key = service .. "\t" .. route
            out[key] = (out[key] or 0) + (tonumber(st.wretr) or 0) + (tonumber(st.wredis) or 0)
        end
    end
    return out
end

-- A reload starts a new worker with a new Lua state.  So that the counters neither drop to zero
-- (the judge reads a drop as an interval without data, Prometheus' rate() as a reset; nginx's
-- shared dict survives a HUP) nor ever go down, HaproxyRouter hands them over:
--   1. GET /counters?freeze: the serving worker returns its counts and from then on *shows*
--      them unchanged (it keeps counting underneath); the router saves them to
--      $SHIPWARDEN_COUNTERS and signals the master;
--   2. the new worker's Lua state starts from that file, so anything it shows is >= what the
--      old one showed;
--   3. a reload the master refuses: GET /counters?thaw, the old worker shows its live counts
--      again (>= the frozen ones).  A freeze ends by itself after FREEZE_SECONDS, should the
--      controller die in between.
-- Requests the old worker answers after the freeze (until the new one takes over the sockets,
-- well under a second) are not counted.  A fresh start removes the file: counters start at 0.
local FREEZE_SECONDS = 30
local frozen, frozen_until = nil, 0

local function load_counters(path)
    local f = path and io.open(path, "r")
    if not f then return end
    for line in f:lines() do
        local fields = {}
        for part in line:gmatch("[^\t]+") do fields[#fields + 1] = part end
        if (fields[1] == "r" or fields[1] == "h") and #fields == 6 then
            table.insert(fields, 5, NOZONE)  -- saved before counts had a zone
        end
        if fields[1] == "r" and #fields == 7 then
            local key = table.concat(fields, "\t", 2, 6)
            requests[key] = (requests[key] or 0) + (tonumber(fields[7]) or 0)
        elseif fields[1] == "h" and #fields == 7 then
            local h = { counts = {}, sum = tonumber(fields[6]) or 0 }
            local i = 0
            for c in fields[7]:gmatch("[^,]+") do
                i = i + 1
                h.counts[i] = tonumber(c) or 0
            end
            hist[table.concat(fields, "\t", 2, 5)] = h
        elseif fields[1] == "x" and #fields == 4 then
            retries_base[fields[2] .. "\t" .. fields[3]] = tonumber(fields[4]) or 0
        end
    end
    f:close()
end
load_counters(os.getenv("SHIPWARDEN_COUNTERS"))

-- The counts as one value: live tables (`copy`: copied, for a freeze) and the retries now.
local function state(copy)
    if not copy then return { requests = requests, hist = hist, retries = retries() } end
    local r, h = {}, {}
    for key, v in pairs(requests) do r[key] = v end
    for key, v in pairs(hist) do
        local c = {}
        for i = 1, BUCKET_COUNT + 1 do c[i] = v.counts[i] or 0 end
        h[key] = { counts = c, sum = v.sum }
    end
    return { requests = r, hist = h, retries = retries() }
end

local function shown()
    if frozen and core.now().sec < frozen_until then return frozen end
    frozen = nil
    return state(false)
end

local function dump_counters(st)
    local lines = {}
    for key, v in pairs(st.requests) do lines[#lines + 1] = "r\t" .. key .. "\t" .. string.format("%d", v) end
    for labels, h in pairs(st.hist) do
        local c = {}
        for i = 1, BUCKET_COUNT + 1 do c[i] = string.format("%d", h.counts[i] or 0) end
        lines[#lines + 1] = "h\t" .. labels .. "\t" .. string.format("%.9f", h.sum) .. "\t" .. table.concat(c, ",")
    end
    for key, n in pairs(st.retries) do lines[#lines + 1] = "x\t" .. key .. "\t" .. string.format("%d", n) end
    return table.concat(lines, "\n") .. "\n"
end

core.register_fetches("sw_count", function(txn)
    local service = txn:get_var("txn.sw_service")
    if service == nil then return "" end
    local version = txn:get_var("txn.sw_ver") or "none"
    local labels = service .. "\t" .. txn:get_var("txn.sw_route") .. "\t" .. version .. "\t"
        .. (txn:get_var("txn.sw_zone") or NOZONE)
    local key = labels .. "\t" .. tostring(txn.sf:status())
    requests[key] = (requests[key] or 0) + 1
    local t0 = txn:get_var("txn.sw_t0")
    -- the same clock as t0 (the `date` fetch): core.now() is HAProxy's internal clock, which may
    -- run behind the date by an offset — every elapsed time then read as 0
    local t1 = tonumber(txn.f:date(0, "us"))
    local elapsed = t0 and t1 and math.max(0, t1 - t0) / 1e6 or 0
    local h = hist[labels]
    if h == nil then
        h = { counts = {}, sum = 0 }
        hist[labels] = h
    end
    local i = bucket_index(elapsed)
    h.counts[i] = (h.counts[i] or 0) + 1
    h.sum = h.sum + elapsed
    return "1"
end)

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\x%02x", c:byte()) end) .. '"'
end

local function split(key)
    local f = {}
    for part in key:gmatch("[^\t]+") do f[#f + 1] = part end
    return f
end

local function zone_of(field)
    return field ~= NOZONE and field or ""
end

local function render(st)
    local lines = {
        "# HELP shipwarden_router_requests_total Requests through the router by service, route, version, zone, status.",
        "# TYPE shipwarden_router_requests_total counter",
    }
    for key, v in pairs(st.requests) do
        local f = split(key)
        lines[#lines + 1] = string.format(
            'shipwarden_router_requests_total{service=%s,route=%s,version=%s,zone=%s,code=%s} %d',
            quote(f[1]), quote(f[2]), quote(f[3]), quote(zone_of(f[4])), quote(f[5]), v)
    end
    lines[#lines + 1] = "# HELP shipwarden_router_request_duration_seconds Time from request to response, per version."
    lines[#lines + 1] = "# TYPE shipwarden_router_request_duration_seconds histogram"
    for key, h in pairs(st.hist) do
        local f = split(key)
        local base = string.format("{service=%s,route=%s,version=%s,zone=%s",
            quote(f[1]), quote(f[2]), quote(f[3]), quote(zone_of(f[4])))
        local cum = 0
        for i = 1, BUCKET_COUNT + 1 do
            cum = cum + (h.counts[i] or 0)
            lines[#lines + 1] = string.format('shipwarden_router_request_duration_seconds_bucket%s,le="%s"} %d',
                base, BUCKET_LABELS[i] or "+Inf", cum)
        end
        lines[#lines + 1] = string.format("shipwarden_router_request_duration_seconds_sum%s} %.6f", base, h.sum)
        lines[#lines + 1] = string.format("shipwarden_router_request_duration_seconds_count%s} %d", base, cum)
    end
    lines[#lines + 1] = "# HELP shipwarden_router_upstream_retries_total Extra upstream attempts (retried after a failure)."
    lines[#lines + 1] = "# TYPE shipwarden_router_upstream_retries_total counter"
    for key, n in pairs(st.retries) do
        local f = split(key)
        lines[#lines + 1] = string.format('shipwarden_router_upstream_retries_total{service=%s,route=%s} %d',
            quote(f[1]), quote(f[2]), n)
    end
    return table.concat(lines, "\n") .. "\n"
end

local function serve(applet, body, ctype)
    applet:set_status(200)
    applet:add_header("content-type", ctype)
    applet:add_header("content-length", tostring(#body))
    applet:start_response()
    applet:send(body)
end

core.register_service("sw_counters", "http", function(applet)
    if applet.qs == "freeze" then
        frozen, frozen_until = state(true), core.now().sec + FREEZE_SECONDS
    elseif applet.qs == "thaw" then
        frozen = nil
    end
    serve(applet, dump_counters(shown()), "text/tab-separated-values")
end)

core.register_service("sw_metrics", "http", function(applet)
    serve(applet, render(shown()), "text/plain; version=0.0.4")
end)
