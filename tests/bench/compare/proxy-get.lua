-- tests/bench/compare/proxy-get.lua: wrk script for tests/bench/compare.sh.
-- wrk connects to the proxy as if it were the server; every request is an
-- absolute-form GET for the origin URL, with proxy credentials:
--
--   CMP_URL=http://127.0.0.1:ORIGIN/bytes/1024 CMP_AUTH='Basic ...' \
--       wrk -t1 -c64 -d5s -s proxy-get.lua http://127.0.0.1:PROXY/
--
-- With CMP_AUTH_FILE (one "Basic ..." value per line) the requests take the
-- credentials in turn instead, each connection starting at a different one:
-- many customers (or sessions) spread over the same connections.
--
-- At the end it prints one line of key=value figures (latencies in
-- microseconds, from wrk's histogram) that compare.sh parses:
--   RESULT requests= seconds= rate= p50_us= p90_us= p99_us= p999_us= max_us=
--          errors= err_connect= err_read= err_write= err_status= err_timeout=
local url = os.getenv("CMP_URL") or error("CMP_URL is not set")
local auth = os.getenv("CMP_AUTH")
local authority = url:match("^https?://([^/]+)") or error("CMP_URL must be absolute")

wrk.method = "GET"
wrk.path = url
wrk.headers["Host"] = authority
if auth and auth ~= "" then
    wrk.headers["Proxy-Authorization"] = auth
end

local auth_file = os.getenv("CMP_AUTH_FILE")
if auth_file and auth_file ~= "" then
    local reqs = {}
    for a in io.lines(auth_file) do
        wrk.headers["Proxy-Authorization"] = a
        reqs[#reqs + 1] = wrk.format()
    end
    if #reqs == 0 then error("CMP_AUTH_FILE " .. auth_file .. " holds no credentials") end
    local next_req = nil
    function init(args)
        next_req = math.random(#reqs)
    end
    function request()
        next_req = next_req % #reqs + 1
        return reqs[next_req]
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
        "RESULT requests=%d seconds=%.3f rate=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
        "errors=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max,
        e.connect + e.read + e.write + e.status + e.timeout,
        e.connect, e.read, e.write, e.status, e.timeout))
end
