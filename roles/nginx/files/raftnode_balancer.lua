-- raftnode_balancer: active health checks and peer choice for nginx in front of a raftnode
-- cluster (open-source nginx has no active checks; this brings them with the Lua module).
--
-- One worker (worker 0) polls every node's health port: the write check (/primary, the
-- leader), the live check (/health) and the read check (/readiness), each with HAProxy's
-- timing model (inter while stable, fastinter while a state is changing, downinter while
-- down; rise and fall counts). The results live in a lua_shared_dict, so every worker
-- routes on the same view and a reload (SIGHUP) keeps it. balancer_by_lua picks the peer:
-- the leader for writes (while none passes, every live node, which forwards to the next
-- leader), round-robin over ready nodes for reads. A connection error on a node marks it
-- down at once (HAProxy's "observe layer4 ... on-error mark-down").
--
-- nginx.conf calls configure() (init_by_lua), start_checker() (init_worker_by_lua),
-- route() (rewrite_by_lua in the client location), balance() (balancer_by_lua) and
-- metrics() (content_by_lua on the stats port).

local balancer = require("ngx.balancer")
local process = require("ngx.process")

local _M = {}

local config            -- set once by configure()
local dict              -- the lua_shared_dict holding the checked state
local in_flight = {}    -- per worker: "check|server" -> true while a check runs
local due = {}          -- per worker: "check|server" -> when that check runs next
local read_turn = 0     -- per worker: round-robin position over the read candidates

local CHECKS = { "primary", "live", "readiness" }
local WRITE_ROUTES = { write = true, write_once = true, write_keyed = true }

-- State keys: "up|CHECK|SERVER" is 1 (passing) or 0 (failing), absent until the first
-- check answered; "count|CHECK|SERVER" counts consecutive results against that state.
local function up_key(check, name) return "up|" .. check .. "|" .. name end
local function count_key(check, name) return "count|" .. check .. "|" .. name end

-- true when passing, false when failing, nil when never checked (treated as passing,
-- as HAProxy starts servers UP: a fresh nginx routes at once instead of answering 503).
local function check_state(check, name)
    local value = dict:get(up_key(check, name))
    if value == nil then return nil end
    return value == 1
end

local function usable(check, name)
    return check_state(check, name) ~= false
end

function _M.configure(options)
    assert(type(options.servers) == "table" and #options.servers > 0, "raftnode_balancer: no servers")
    for _, check in ipairs(CHECKS) do
        assert(options.checks[check], "raftnode_balancer: no timing for check " .. check)
    end
    config = options
    dict = ngx.shared[options.shared_dict]
    assert(dict, "raftnode_balancer: lua_shared_dict " .. options.shared_dict .. " is not declared")
end

-- A check result, with rise/fall: the first result of a server sets its state at once;
-- later a passing server goes down after `fall` failures in a row, a failing one comes
-- back after `rise` successes in a row.
local function record(check, name, passed)
    local timing = config.checks[check]
    local state = check_state(check, name)
    dict:incr("checks|" .. check .. "|" .. name .. "|" .. (passed and "pass" or "fail"), 1, 0)
    if state == nil then
        dict:set(up_key(check, name), passed and 1 or 0)
        dict:set(count_key(check, name), 0)
        return
    end
    if state == passed then
        dict:set(count_key(check, name), 0)
        return
    end
    local count = dict:incr(count_key(check, name), 1, 0)
    if count >= (passed and timing.rise or timing.fall) then
        dict:set(up_key(check, name), passed and 1 or 0)
        dict:set(count_key(check, name), 0)
        dict:incr("transitions|" .. check .. "|" .. name, 1, 0)
    end
end

-- HAProxy's intervals: downinter while down, fastinter while a transition is under way
-- (some results already point the other way), inter while stable and up.
local function next_interval(check, name)
    local timing = config.checks[check]
    if (dict:get(count_key(check, name)) or 0) > 0 then return timing.fastinter end
    if check_state(check, name) == false then return timing.downinter end
    return timing.inter
end

-- GET path on the node's health port; true only for a 200 within the check timeout.
local function probe(server, path)
    local sock = ngx.socket.tcp()
    sock:settimeout(config.check_timeout_ms)
    local ok = sock:connect(server.address, server.health_port or config.health_port)
    if not ok then return false end
    local host = server.address:find(":", 1, true) and ("[" .. server.address .. "]") or server.address
    local request = "GET " .. path .. " HTTP/1.0\r\nHost: " .. host .. "\r\n"
        .. "User-Agent: raftnode-nginx-check\r\nConnection: close\r\n\r\n"
    if not sock:send(request) then
        sock:close()
        return false
    end
    local line = sock:receive("*l")
    sock:close()
    return line ~= nil and line:match("^HTTP/%d%.%d 200") ~= nil
end

local function run_check(premature, check, server)
    local key = check .. "|" .. server.name
    if not premature then
        record(check, server.name, probe(server, config.checks[check].path))
        ngx.update_time()
        due[key] = ngx.now() + next_interval(check, server.name) / 1000
    end
    in_flight[key] = nil
end

local function tick(premature)
    if premature or ngx.worker.exiting() then return end
    ngx.update_time()
    local now = ngx.now()
    for _, check in ipairs(CHECKS) do
        for _, server in ipairs(config.servers) do
            local key = check .. "|" .. server.name
            if not in_flight[key] and (due[key] or 0) <= now then
                in_flight[key] = true
                local ok, err = ngx.timer.at(0, run_check, check, server)
                if not ok then
                    in_flight[key] = nil
                    ngx.log(ngx.ERR, "raftnode_balancer: cannot start the ", check, " check of ",
                        server.name, ": ", err)
                end
            end
        end
    end
end

-- true once this worker's parent is no longer nginx's master (the master was killed).
local function orphaned(master_pid)
    local stat = io.open("/proc/self/stat")
    if not stat then return false end
    local line = stat:read("*l")
    stat:close()
    local ppid = line and tonumber(line:match("^%d+ %b() %S+ (%d+)"))
    return ppid ~= nil and ppid ~= master_pid
end

-- A worker outlives a killed master (nginx workers do not watch it, unlike HAProxy's) and
-- keeps the listening sockets, so the restarted nginx could not bind them where systemd
-- cannot kill the old control group (seen in containers on cgroup v1). Each worker checks
-- its parent every watchdog interval and exits once it is orphaned.
local function start_watchdog()
    local master_pid = process.get_master_pid()
    if not master_pid then return end
    ngx.timer.every(config.watchdog_ms / 1000, function(premature)
        if premature or not orphaned(master_pid) then return end
        ngx.log(ngx.ALERT, "raftnode_balancer: nginx's master ", master_pid, " is gone; this worker exits")
        os.exit(1)
    end)
end

-- Every worker watches its master; one worker checks (the others read the shared state):
-- the master restarts a dead worker with the same id, which starts checking again.
function _M.start_checker()
    start_watchdog()
    if ngx.worker.id() ~= 0 then return end
    local ok, err = ngx.timer.every(config.tick_ms / 1000, tick)
    if not ok then
        ngx.log(ngx.ERR, "raftnode_balancer: cannot start the health checker: ", err)
        return
    end
    ngx.timer.at(0, tick)
end

-- Candidates in the order they should be tried: the leader (passes the write check), then
-- the live nodes, which forward a write to the leader (or wait for the next one, bounded).
-- Without the live fallback, only nodes not known to fail the write check.
local function write_candidates()
    local leaders, others = {}, {}
    for _, server in ipairs(config.servers) do
        local primary = check_state("primary", server.name)
        if primary == true then
            leaders[#leaders + 1] = server
        elseif config.write_fallback_to_live then
            if usable("live", server.name) then others[#others + 1] = server end
        elseif primary == nil then
            others[#others + 1] = server
        end
    end
    for _, server in ipairs(others) do leaders[#leaders + 1] = server end
    return leaders
end

local function read_candidates()
    local ready = {}
    for _, server in ipairs(config.servers) do
        if usable("readiness", server.name) then ready[#ready + 1] = server end
    end
    return ready
end

local function unavailable()
    ngx.status = 503
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Retry-After"] = tostring(config.unavailable_retry_after)
    ngx.say(config.unavailable_body)
    return ngx.exit(503)
end

-- rewrite_by_lua in the client location: which named location (retry rules) serves the
-- request, or nginx's own 503 when no node can take it.
function _M.route()
    local method = ngx.req.get_method()
    if method == "POST" or method == "PUT" or method == "DELETE" then
        if #write_candidates() == 0 then return unavailable() end
        if ngx.var[config.idempotency_variable] ~= nil then
            return ngx.exec("@write_keyed")
        end
        -- nginx never resends a POST that reached a node, but would resend a PUT or DELETE
        -- (idempotent in HTTP, not for a compare-and-set): those get no retry at all.
        if method == "POST" then return ngx.exec("@write") end
        return ngx.exec("@write_once")
    end
    if #read_candidates() == 0 then return unavailable() end
    return ngx.exec("@read")
end

-- header_filter_by_lua in the keyed write location: a refusal of the last attempt (503, or
-- 507 disk_full, refused before proposing) does not speak for the earlier attempts, one of
-- which may have reached a leader and may still apply: answered 504 outcome_unknown instead
-- (its body from keyed_refusal_body). Other answers pass unchanged.
function _M.keyed_refusal_header()
    local status = ngx.status
    local code = ngx.header["X-Raftnode-Error"]
    if status ~= 503 and not (status == 507 and code == "disk_full") then return end
    ngx.ctx.keyed_unknown = true
    ngx.status = 504
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #config.keyed_unknown_body + 1
    ngx.header["Retry-After"] = nil
    ngx.header["X-Raftnode-Error"] = "outcome_unknown"
end

-- body_filter_by_lua in the keyed write location: the outcome_unknown body in place of the
-- refusal's.
function _M.keyed_refusal_body()
    local ctx = ngx.ctx
    if not ctx.keyed_unknown then return end
    if ctx.keyed_body_sent then
        ngx.arg[1] = ""
    else
        ngx.arg[1] = config.keyed_unknown_body .. "\n"
        ctx.keyed_body_sent = true
    end
end

-- After a connection error (502: refused, reset, or closed without an answer) the node is
-- down for every check until its checks pass again.
local function mark_down(name)
    for _, check in ipairs(CHECKS) do
        if check_state(check, name) ~= false then
            dict:set(up_key(check, name), 0)
            dict:set(count_key(check, name), 0)
            dict:incr("transitions|" .. check .. "|" .. name, 1, 0)
        end
    end
    dict:incr("marked_down|" .. name, 1, 0)
end

local function first_untried(candidates, tried, start)
    local n = #candidates
    for i = 0, n - 1 do
        local server = candidates[(start + i) % n + 1]
        if not tried[server.name] then return server end
    end
    return candidates[start % n + 1]
end

-- balancer_by_lua: the peer of this attempt (the first, or a retry nginx decided on by
-- proxy_next_upstream).
function _M.balance()
    local ctx = ngx.ctx
    local route = ngx.var.raftnode_route
    if ctx.tried == nil then
        ctx.tried = {}
        local retries = WRITE_ROUTES[route] and config.write_retries or config.read_retries
        if route == "write_once" then retries = 0 end
        if retries > 0 then balancer.set_more_tries(retries) end
    elseif config.mark_down_on_connect_error then
        local state, status = balancer.get_last_failure()
        if state == "failed" and status == 502 and ctx.last then mark_down(ctx.last) end
    end
    local server
    if WRITE_ROUTES[route] then
        local candidates = write_candidates()
        if #candidates == 0 then candidates = config.servers end
        server = first_untried(candidates, ctx.tried, 0)
    else
        local candidates = read_candidates()
        if #candidates == 0 then candidates = config.servers end
        read_turn = read_turn + 1
        server = first_untried(candidates, ctx.tried, read_turn)
    end
    ctx.tried[server.name] = true
    ctx.last = server.name
    local ok, err = balancer.set_current_peer(server.address, server.port or config.client_port)
    if not ok then
        ngx.log(ngx.ERR, "raftnode_balancer: cannot use ", server.name, ": ", err)
        return ngx.exit(502)
    end
end

-- Prometheus text: each server's checked state and counters, how many servers pass the
-- write check (raftnode_balancer_write_servers: 0 means writes have no leader to go to),
-- and stub_status's connection figures.
function _M.metrics()
    local out = {}
    local function add(line) out[#out + 1] = line end
    local function per_server(name, help, kind, value_of)
        add("# HELP " .. name .. " " .. help)
        add("# TYPE " .. name .. " " .. kind)
        for _, check in ipairs(CHECKS) do
            for _, server in ipairs(config.servers) do
                add(string.format('%s{check="%s",server="%s"} %d', name, check, server.name, value_of(check, server.name)))
            end
        end
    end
    local leaders = 0
    for _, server in ipairs(config.servers) do
        if check_state("primary", server.name) == true then leaders = leaders + 1 end
    end
    add("# HELP raftnode_balancer_write_servers Servers passing the write check (the leader); 0: no write backend.")
    add("# TYPE raftnode_balancer_write_servers gauge")
    add("raftnode_balancer_write_servers " .. leaders)
    per_server("raftnode_balancer_server_up",
        "Whether the server passes the balancer's check (1), fails it (0) or was never checked (-1).", "gauge",
        function(check, name)
            local state = check_state(check, name)
            if state == nil then return -1 end
            return state and 1 or 0
        end)
    per_server("raftnode_balancer_transitions_total", "Changes of a server's checked state.", "counter",
        function(check, name) return dict:get("transitions|" .. check .. "|" .. name) or 0 end)
    add("# HELP raftnode_balancer_checks_total Health checks run, by result.")
    add("# TYPE raftnode_balancer_checks_total counter")
    for _, check in ipairs(CHECKS) do
        for _, server in ipairs(config.servers) do
            for _, result in ipairs({ "pass", "fail" }) do
                add(string.format('raftnode_balancer_checks_total{check="%s",server="%s",result="%s"} %d',
                    check, server.name, result, dict:get("checks|" .. check .. "|" .. server.name .. "|" .. result) or 0))
            end
        end
    end
    add("# HELP raftnode_balancer_marked_down_total Servers marked down at a connection error.")
    add("# TYPE raftnode_balancer_marked_down_total counter")
    for _, server in ipairs(config.servers) do
        add(string.format('raftnode_balancer_marked_down_total{server="%s"} %d', server.name,
            dict:get("marked_down|" .. server.name) or 0))
    end
    add("# HELP nginx_connections Client connections by state (stub_status).")
    add("# TYPE nginx_connections gauge")
    for _, state in ipairs({ "active", "reading", "writing", "waiting" }) do
        add(string.format('nginx_connections{state="%s"} %s', state, ngx.var["connections_" .. state] or "0"))
    end
    ngx.header["Content-Type"] = "text/plain; version=0.0.4"
    ngx.print(table.concat(out, "\n"), "\n")
end

return _M
