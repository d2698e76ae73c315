-- One wrk script for every system the side-by-side benchmarks drive (raftnode, etcd's JSON
-- gateway, the PySyncObj app), so each sends the same keys, values and request mix.
--
--   wrk -t2 -c64 -d10s -s bench/wrk/kv.lua http://127.0.0.1:PORT -- \
--       dialect=raftnode mode=write keys=10000 value_bytes=100 prefix=bench- query=
--
-- dialect: raftnode | pysyncobj (POST /kv, GET /kv/{key}) | etcd (POST /v3/kv/put|range, base64)
-- mode:    write  - a random key of prefix0 .. prefix(keys-1)
--          read   - a random existing key of the same range
--          unique - a new key per write: prefix<thread>-<n>
--          txn    - a compare-and-put transaction on a random key of the range: compare the
--                   key's version (less than 2^62, so it always holds), then put
--          keepalive - renew a random lease of leases=ID,ID,... (POST /lease/{id}/keepalive,
--                   etcd: POST /v3/lease/keepalive, one request per stream)
-- keyed:   1 sends every write with its own Idempotency-Key (as raftnode.client does)
-- query:   appended to read paths (raftnode: ?consistency=stale); etcd_serializable=1 asks etcd
--          for a serializable (local) range instead of a linearizable one.
-- done() prints one line "WRK-JSON {...}" with counts and latency percentiles (microseconds).

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
   local out = {}
   local n = #s
   for i = 1, n, 3 do
      local a, b, c = s:byte(i, i + 2)
      local v = a * 65536 + (b or 0) * 256 + (c or 0)
      local c1 = math.floor(v / 262144) % 64
      local c2 = math.floor(v / 4096) % 64
      local c3 = math.floor(v / 64) % 64
      local c4 = v % 64
      out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
         .. (b and b64chars:sub(c3 + 1, c3 + 1) or "=")
         .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
   end
   return table.concat(out)
end

local opts = {}
local value, value_json
local counter = 0
local run_id = "0"
local sent = 0

function init(args)
   opts = {dialect = "raftnode", mode = "write", keys = "10000", value_bytes = "100",
           prefix = "bench-", query = "", etcd_serializable = "0", keyed = "0", leases = ""}
   for _, a in ipairs(args) do
      local k, v = a:match("^([%w_]+)=(.*)$")
      if k then opts[k] = v end
   end
   opts.keys = tonumber(opts.keys)
   lease_ids = {}
   for id in opts.leases:gmatch("%d+") do lease_ids[#lease_ids + 1] = id end
   value = string.rep("x", tonumber(opts.value_bytes))
   if opts.dialect == "etcd" then
      value_json = base64(value)
   else
      value_json = value
   end
   math.randomseed(os.time() + (tid or 0) * 7919)
   run_id = string.format("%d-%d", os.time(), math.random(0, 2147483646))
   ok_count = 0
   non2xx = 0
end

local function next_key()
   if opts.mode == "unique" then
      counter = counter + 1
      return opts.prefix .. (tid or 0) .. "-" .. counter
   end
   return opts.prefix .. math.random(0, opts.keys - 1)
end

local json_headers = {["Content-Type"] = "application/json"}

local function write_headers()
   if opts.keyed ~= "1" then return json_headers end
   sent = sent + 1
   return {["Content-Type"] = "application/json",
           ["Idempotency-Key"] = "wrk-" .. run_id .. "-" .. (tid or 0) .. "-" .. sent}
end

local function txn_request(key)
   if opts.dialect == "etcd" then
      local k = base64(key)
      return wrk.format("POST", "/v3/kv/txn", json_headers,
                        '{"compare":[{"key":"' .. k .. '","target":"VERSION","result":"LESS",'
                        .. '"version":"4611686018427387904"}],"success":[{"request_put":'
                        .. '{"key":"' .. k .. '","value":"' .. value_json .. '"}}]}')
   end
   return wrk.format("POST", "/txn", write_headers(),
                     '{"compare":[{"key":"' .. key .. '","target":"version","op":"less",'
                     .. '"value":4611686018427387904}],"success":[{"op":"put","key":"'
                     .. key .. '","value":"' .. value_json .. '"}]}')
end

local function keepalive_request()
   local id = lease_ids[math.random(1, #lease_ids)]
   if opts.dialect == "etcd" then
      return wrk.format("POST", "/v3/lease/keepalive", json_headers, '{"ID":"' .. id .. '"}')
   end
   return wrk.format("POST", "/lease/" .. id .. "/keepalive")
end

function request()
   if opts.mode == "keepalive" then return keepalive_request() end
   local key = next_key()
   if opts.mode == "txn" then return txn_request(key) end
   if opts.mode == "read" then
      if opts.dialect == "etcd" then
         local body = '{"key":"' .. base64(key) .. '"'
         if opts.etcd_serializable == "1" then body = body .. ',"serializable":true' end
         return wrk.format("POST", "/v3/kv/range", json_headers, body .. "}")
      end
      return wrk.format("GET", "/kv/" .. key .. opts.query)
   end
   if opts.dialect == "etcd" then
      return wrk.format("POST", "/v3/kv/put", json_headers,
                        '{"key":"' .. base64(key) .. '","value":"' .. value_json .. '"}')
   end
   return wrk.format("POST", "/kv", write_headers(),
                     '{"key":"' .. key .. '","value":"' .. value_json .. '"}')
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok_count = ok_count + 1
   else
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local ok, bad = 0, 0
   for _, t in ipairs(threads) do
      ok = ok + (t:get("ok_count") or 0)
      bad = bad + (t:get("non2xx") or 0)
   end
   local e = summary.errors
   local parts = {
      string.format('"duration_us":%d', summary.duration),
      string.format('"requests":%d', summary.requests),
      string.format('"bytes":%d', summary.bytes),
      string.format('"ok":%d', ok),
      string.format('"non2xx":%d', bad),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,'
                    .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d}',
                    latency.min, latency.max, latency.mean, latency.stdev,
                    latency:percentile(50), latency:percentile(90), latency:percentile(99),
                    latency:percentile(99.9)),
   }
   io.write("WRK-JSON {" .. table.concat(parts, ",") .. "}\n")
end
