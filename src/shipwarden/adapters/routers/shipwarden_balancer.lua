-- shipwarden routing inside nginx.
--
-- Why Lua: a plain `nginx -s reload` drops requests under load (old workers
-- close their keep-alive connections), so routing changes must not touch the
-- nginx configuration.  The routing table lives in a lua_shared_dict and is
-- replaced through the admin port; every request reads it once.
--
-- Per request: the access phase picks a version by weight (percent), the
-- balancer picks an instance of that version (round robin per worker) and,
-- when nginx retries (proxy_next_upstream), another instance of the same
-- version first, then any other instance of the route.  The log phase counts
-- requests per service/route/version/zone/code for canary analysis (zone: of the instance that
-- answered, so a zone's canary is judged on that zone's traffic alone).
--
-- JSON is parsed by the small codec below because Debian's nginx Lua module
-- ships without cjson; it only runs when a table changes, never per request.

local balancer = require "ngx.balancer"

local routes_dict = ngx.shared.shipwarden_routes
local metrics_dict = ngx.shared.shipwarden_metrics

local _M = {}

local MAX_RETRIES = 4         -- extra attempts after the first
local NOZONE = "~"            -- a pool without a zone, in the metrics' keys (not a zone name)
local DOWN_SECONDS = 2        -- a peer that refused a connection is skipped this long (per worker)
-- Latency histogram bounds (seconds): 1 ms × 1.25^k up to ~28 s.  Fine enough for the canary
-- judge to compare quantiles (the coarse Prometheus defaults put every fast request in one
-- bucket, which leaves a quantile test nothing to compare); 1 ms is nginx's time resolution.
local BUCKET_BASE, BUCKET_GROWTH, BUCKET_COUNT = 0.001, 1.25, 47
local BUCKETS, BUCKET_LABELS = {}, {}
for i = 1, BUCKET_COUNT do
    BUCKETS[i] = BUCKET_BASE * BUCKET_GROWTH ^ (i - 1)
    BUCKET_LABELS[i] = string.format("%.6g", BUCKETS[i])
end
local LOG_GROWTH = math.log(BUCKET_GROWTH)

-- Index of the first bucket with elapsed <= bound (BUCKET_COUNT + 1 is +Inf); O(1).
local function bucket_index(elapsed)
    if elapsed <= BUCKET_BASE then return 1 end
    local i = math.ceil(math.log(elapsed / BUCKET_BASE) / LOG_GROWTH) + 1
    if i > BUCKET_COUNT + 1 then i = BUCKET_COUNT + 1 end
    while i > 1 and elapsed <= BUCKETS[i - 1] do i = i - 1 end  -- floating-point edges
    while i <= BUCKET_COUNT and elapsed > BUCKETS[i] do i = i + 1 end
    return i
end

-- ---------------------------------------------------------------- JSON codec
local decode_value

local function skip(s, i)
    local _, e = s:find("^[ \t\r\n]*", i)
    return e + 1
end

local escapes = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }

local function utf8(cp)
    if cp < 0x80 then return string.char(cp) end
    if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40) end
    return string.char(0xE0 + math.floor(cp / 0x1000), 0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function decode_string(s, i)
    local out, j = {}, i + 1
    while true do
        local c = s:sub(j, j)
        if c == "" then error("unterminated string") end
        if c == '"' then return table.concat(out), j + 1 end
        if c == "\\" then
            local e = s:sub(j + 1, j + 1)
            if e == "u" then
                local hex = s:sub(j + 2, j + 5)
                if not hex:match("^%x%x%x%x$") then error("bad \\u escape") end
                out[#out + 1] = utf8(tonumber(hex, 16))
                j = j + 6
            elseif escapes[e] then
                out[#out + 1] = escapes[e]
                j = j + 2
            else
                error("bad escape")
            end
        else
            out[#out + 1] = c
            j = j + 1
        end
    end
end

decode_value = function(s, i)
    i = skip(s, i)
    local c = s:sub(i, i)
    if c == "{" then
        local obj = {}
        i = skip(s, i + 1)
        if s:sub(i, i) == "}" then return obj, i + 1 end
        while true do
            if s:sub(i, i) ~= '"' then error("object key expected at " .. i) end
            local k
            k, i = decode_string(s, i)
            i = skip(s, i)
            if s:sub(i, i) ~= ":" then error("':' expected at " .. i) end
            obj[k], i = decode_value(s, i + 1)
            i = skip(s, i)
            c = s:sub(i, i)
            if c == "}" then return obj, i + 1 end
            if c ~= "," then error("',' or '}' expected at " .. i) end
            i = skip(s, i + 1)
        end
    elseif c == "[" then
        local arr = {}
        i = skip(s, i + 1)
        if s:sub(i, i) == "]" then return arr, i + 1 end
        while true do
            arr[#arr + 1], i = decode_value(s, i)
            i = skip(s, i)
            c = s:sub(i, i)
            if c == "]" then return arr, i + 1 end
            if c ~= "," then error("',' or ']' expected at " .. i) end
            i = i + 1
        end
    elseif c == '"' then
        return decode_string(s, i)
    elseif s:find("^true", i) then
        return true, i + 4
    elseif s:find("^false", i) then
        return false, i + 5
    elseif s:find("^null", i) then
        return nil, i + 4
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or not tonumber(num) then error("unexpected input at " .. i) end
    return tonumber(num), i + #num
end

local function decode(s)
    local ok, v, i = pcall(decode_value, s, 1)
    if not ok then return nil, v end
    if skip(s, i) <= #s then return nil, "trailing data" end
    return v
end

local function quote(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return string.format("\\u%04x", c:byte())
    end) .. '"'
end

-- ---------------------------------------------------------- routing tables
-- A normalised route: { pools = { {version, zone, weight, peers = {{host, port, addr, version}}} }, total, npeers }

local function normalise_route(pools, name)
    if pools == nil then pools = {} end
    if type(pools) ~= "table" then return nil, name .. " must be a list" end
    local route = { pools = {}, total = 0, npeers = 0 }
    for _, p in ipairs(pools) do
        if type(p) ~= "table" or type(p.version) ~= "string" or p.version == "" then
            return nil, name .. ": every pool needs a version"
        end
        local w = p.weight
        if w == nil then w = 100 end
        if type(w) ~= "number" or w < 0 or w > 100 or w % 1 ~= 0 then
            return nil, name .. ": weight of " .. p.version .. " must be an integer 0..100"
        end
        if p.zone ~= nil and (type(p.zone) ~= "string" or not p.zone:match("^[%w_.%-]+$")) then
            return nil, name .. ": zone of " .. p.version .. " must be a name"
        end
        -- a version may have one pool per zone (E2): each zone gets its share of the traffic;
        -- a request whose zone pool refuses is retried on the route's other pools
        local pool = { version = p.version, zone = p.zone, weight = w, peers = {}, rr = 0 }
        for _, a in ipairs(type(p.addresses) == "table" and p.addresses or {}) do
            local host, port = tostring(a):match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
            if not host then return nil, name .. ": address " .. tostring(a) .. " is not ipv4:port" end
            pool.peers[#pool.peers + 1] = {
                host = host, port = tonumber(port), addr = a, version = p.version, zone = p.zone,
            }
        end
        if w > 0 and #pool.peers == 0 then return nil, name .. ": pool " .. p.version .. " has weight but no addresses" end
        route.total = route.total + (#pool.peers > 0 and w or 0)
        route.npeers = route.npeers + #pool.peers
        route.pools[#route.pools + 1] = pool
    end
    return route
end

local function normalise(t)
    if type(t) ~= "table" then return nil, "routing table must be an object" end
    local prod, err = normalise_route(t.production, "production")
    if not prod then return nil, err end
    local prev
    prev, err = normalise_route(t.preview, "preview")
    if not prev then return nil, err end
    if #prod.pools > 0 and prod.total ~= 100 then
        return nil, "production weights must sum to 100, got " .. prod.total
    end
    return { production = prod, preview = prev }
end

local function encode_route(route)
    local out = {}
    for _, p in ipairs(route.pools) do
        local addrs = {}
        for _, peer in ipairs(p.peers) do addrs[#addrs + 1] = quote(peer.addr) end
        local zone = p.zone and (',"zone":' .. quote(p.zone)) or ""
        out[#out + 1] = string.format('{"version":%s,"weight":%d,"addresses":[%s]%s}',
            quote(p.version), p.weight, table.concat(addrs, ","), zone)
    end
    return "[" .. table.concat(out, ",") .. "]"
end

local function encode(t)
    return '{"production":' .. encode_route(t.production) .. ',"preview":' .. encode_route(t.preview) .. "}"
end

local function store(service, t)
    routes_dict:set("t:" .. service, encode(t))
    routes_dict:incr("g:" .. service, 1, 0)
end

-- Per-worker cache of parsed tables, invalidated by the generation counter in the shared dict.
local cache = {}

local function table_for(service)
    local gen = routes_dict:get("g:" .. service)
    if not gen then return nil end
    local c = cache[service]
    if c and c.gen == gen then return c.t end
    local raw = routes_dict:get("t:" .. service)
    local t = raw and normalise(decode(raw))
    cache[service] = { gen = gen, t = t }
    return t
end

-- ------------------------------------------------------------- phases
function _M.init(path)
    if routes_dict:get("loaded") then return end   -- HUP reload: the shared dict survived, keep it
    routes_dict:set("loaded", true)
    local f = io.open(path, "r")
    if not f then return end
    local data = f:read("*a")
    f:close()
    local all, err = decode(data)
    if type(all) ~= "table" or type(all.services) ~= "table" then
        ngx.log(ngx.ERR, "shipwarden: ignoring unreadable routes file ", path, ": ", err or "no services")
        return
    end
    for service, raw in pairs(all.services) do
        local t
        t, err = normalise(raw)
        if t then store(service, t) else ngx.log(ngx.ERR, "shipwarden: bad table for ", service, ": ", err) end
    end
end

function _M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

function _M.access(service, route_name)
    local t = table_for(service)
    local route = t and t[route_name]
    local ctx = ngx.ctx
    if not route or route.total <= 0 then
        ctx.sw = { service = service, route = route_name, version = "none", tries = 0 }
        ngx.status = 503
        ngx.header["Content-Type"] = "text/plain"
        ngx.say("shipwarden: no pool serves the ", route_name, " route of service ", service)
        return ngx.exit(503)
    end
    local x = math.random() * route.total
    local chosen
    for _, p in ipairs(route.pools) do
        if #p.peers > 0 and p.weight > 0 then
            chosen = p
            x = x - p.weight
            if x < 0 then break end
        end
    end
    ctx.sw = {
        service = service, route = route_name, r = route, pool = chosen, version = chosen.version,
        zone = chosen.zone, tries = 0,
    }
end

local down = {}   -- addr -> time until which this worker avoids the peer
local ANY = math.huge   -- as `now` for pick_rr: every peer is past its down mark (ignore them)

local function pick_rr(pool, now, tried)
    local n = #pool.peers
    for _ = 1, n do
        pool.rr = pool.rr % n + 1
        local peer = pool.peers[pool.rr]
        if not (tried and tried[peer.addr]) and (down[peer.addr] or 0) <= now then return peer end
    end
    return nil
end

local function pick_retry(c, now)
    local tried = c.tried
    local peer = pick_rr(c.pool, now, tried)
    if peer then return peer end
    for pass = 1, 3 do   -- other versions with weight, then any pool, then ignore down marks
        for _, p in ipairs(c.r.pools) do
            if p ~= c.pool and (pass > 1 or p.weight > 0) then
                peer = pick_rr(p, pass == 3 and ANY or now, tried)
                if peer then return peer end
            end
        end
    end
    return pick_rr(c.pool, ANY, tried) or c.peer   -- only tried peers left: a new connection to the last one
end

function _M.balance()
    local c = ngx.ctx.sw
    local now = ngx.now()
    local peer
    if c.tries == 0 then
        peer = pick_rr(c.pool, now) or pick_rr(c.pool, ANY)
        local more = math.min(c.r.npeers - 1, MAX_RETRIES)
        if more > 0 then balancer.set_more_tries(more) end
        c.tried = {}
    else
        local state = balancer.get_last_failure()
        if state == "failed" then down[c.peer.addr] = now + DOWN_SECONDS end
        c.tried[c.peer.addr] = true
        peer = pick_retry(c, now)
    end
    c.tries = c.tries + 1
    c.peer = peer
    c.version = peer.version
    c.zone = peer.zone
    local ok, err = balancer.set_current_peer(peer.host, peer.port)
    if not ok then ngx.log(ngx.ERR, "shipwarden: set_current_peer ", peer.addr, ": ", err) end
end

-- Did the last upstream attempt answer?  When every attempt failed (refused, reset, timed out)
-- nginx answers 502/504 itself and $upstream_header_time ends in "-" (no header was received);
-- that answer is the router's, not the version's, so it gets no version label.
local function upstream_answered()
    local t = ngx.var.upstream_header_time
    local last = t and t:match("([^%s,:]+)%s*$")
    return last ~= nil and last ~= "-"
end

function _M.header()
    local c = ngx.ctx.sw
    if c and c.version ~= "none" and upstream_answered() then
        ngx.header["X-Shipwarden-Version"] = c.version
    end
end

function _M.log()
    local c = ngx.ctx.sw
    if not c then return end
    -- NOZONE stands for "no zone" in the keys (an empty field would vanish when they are split)
    local labels = c.service .. "\t" .. c.route .. "\t" .. c.version .. "\t" .. (c.zone or NOZONE)
    metrics_dict:incr("r\t" .. labels .. "\t" .. ngx.status, 1, 0)
    local elapsed = ngx.now() - ngx.req.start_time()
    metrics_dict:incr("b\t" .. labels .. "\t" .. bucket_index(elapsed), 1, 0)
    metrics_dict:incr("s\t" .. labels, elapsed, 0)
    if c.tries > 1 then metrics_dict:incr("x\t" .. c.service .. "\t" .. c.route, c.tries - 1, 0) end
end

-- ------------------------------------------------------------- admin port
local function labels(names, values)
    local out = {}
    for i, n in ipairs(names) do out[i] = n .. "=" .. quote(values[i] or "") end
    return "{" .. table.concat(out, ",")
end

local function metrics()
    local lines = {
        "# HELP shipwarden_router_requests_total Requests through the router by service, route, version, zone, status.",
        "# TYPE shipwarden_router_requests_total counter",
    }
    local hist, retries = {}, {}
    local names = { "service", "route", "version", "zone", "code" }
    local hnames, xnames = { "service", "route", "version", "zone" }, { "service", "route" }
    for _, key in ipairs(metrics_dict:get_keys(0)) do
        local f = {}
        for part in key:gmatch("[^\t]+") do f[#f + 1] = part end
        local v = metrics_dict:get(key) or 0
        if ((f[1] == "r" or f[1] == "b") and #f == 5) or (f[1] == "s" and #f == 4) then
            table.insert(f, 5, NOZONE)  -- counted before zones were (the dict survives a HUP)
        end
        local zone = f[5] ~= NOZONE and f[5] or ""
        if f[1] == "r" then
            lines[#lines + 1] = "shipwarden_router_requests_total" .. labels(names, { f[2], f[3], f[4], zone, f[6] })
                .. "} " .. string.format("%d", v)
        elseif f[1] == "b" or f[1] == "s" then
            local id = f[2] .. "\t" .. f[3] .. "\t" .. f[4] .. "\t" .. f[5]
            hist[id] = hist[id] or { f[2], f[3], f[4], zone, counts = {}, sum = 0 }
            if f[1] == "b" then hist[id].counts[tonumber(f[6])] = v else hist[id].sum = v end
        elseif f[1] == "x" then
            retries[#retries + 1] = "shipwarden_router_upstream_retries_total" .. labels(xnames, { f[2], f[3] })
                .. "} " .. string.format("%d", v)
        end
    end
    lines[#lines + 1] = "# HELP shipwarden_router_request_duration_seconds Time from request start to log, per version."
    lines[#lines + 1] = "# TYPE shipwarden_router_request_duration_seconds histogram"
    for _, h in pairs(hist) do
        local base = labels(hnames, h)
        local cum = 0
        for i = 1, #BUCKETS + 1 do
            cum = cum + (h.counts[i] or 0)
            local le = BUCKET_LABELS[i] or "+Inf"
            lines[#lines + 1] = "shipwarden_router_request_duration_seconds_bucket" .. base .. ',le="' .. le
                .. '"} ' .. string.format("%d", cum)
        end
        lines[#lines + 1] = "shipwarden_router_request_duration_seconds_sum" .. base .. "} " .. string.format("%.6f", h.sum)
        lines[#lines + 1] = "shipwarden_router_request_duration_seconds_count" .. base .. "} " .. string.format("%d", cum)
    end
    lines[#lines + 1] = "# HELP shipwarden_router_upstream_retries_total Extra upstream attempts (retried after a failure)."
    lines[#lines + 1] = "# TYPE shipwarden_router_upstream_retries_total counter"
    for _, l in ipairs(retries) do lines[#lines + 1] = l end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.say(table.concat(lines, "\n"))
end

local function fail(status, msg)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.say('{"error":' .. quote(msg) .. "}")
    return ngx.exit(status)
end

function _M.admin()
    local uri, method = ngx.var.uri, ngx.req.get_method()
    if uri == "/metrics" then return metrics() end
    if uri == "/healthz" then return ngx.say("ok") end
    local service = uri:match("^/routes/([%w_.%-]+)$")
    if not service then return fail(404, "unknown path " .. uri) end
    ngx.header["Content-Type"] = "application/json"
    if method == "GET" then
        local raw = routes_dict:get("t:" .. service)
        if not raw then return fail(404, "no routing table for " .. service) end
        return ngx.say(raw)
    elseif method == "PUT" then
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        if not body then return fail(400, "empty or oversized body") end
        local raw, err = decode(body)
        if raw == nil then return fail(400, "invalid JSON: " .. tostring(err)) end
        local t
        t, err = normalise(raw)
        if not t then return fail(400, err) end
        store(service, t)
        return ngx.say(encode(t))
    elseif method == "DELETE" then
        routes_dict:delete("t:" .. service)
        routes_dict:incr("g:" .. service, 1, 0)
        return ngx.say("{}")
    end
    return fail(405, "method not allowed")
end

return _M
