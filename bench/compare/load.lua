-- wrk requests for bench/compare/run.sh: the same four requests to either system, in its own
-- dialect, with the Host header rotating over the tenants.
--   COMPARE_DIALECT   peer     (django-tenants: /api/medicines/, /api/bills/)
--                     apotheca (/api/v1/medicines, /api/v1/sales, a bearer token)
--   COMPARE_SCENARIO  list | detail | sale | mix (9 list : 9 detail : 2 sale of every 20)
--   COMPARE_TENANTS   N: hosts t1.<domain> .. tN.<domain>, round robin (mix: seeded random)
--   COMPARE_DOMAIN    the hosts' parent domain (default localhost)
--   COMPARE_TOKEN     apotheca: the bearer token (the same in every tenant)
--   COMPARE_MEDICINES comma-separated medicine ids a sale may take (default 1..50)
-- Every sale has two lines of different medicines, 1 or 2 units each. Requests are built once
-- per thread; done() prints one JSON line.

local dialect = os.getenv("COMPARE_DIALECT") or "peer"
local scenario = os.getenv("COMPARE_SCENARIO") or "list"
local ntenants = tonumber(os.getenv("COMPARE_TENANTS") or "20")
local domain = os.getenv("COMPARE_DOMAIN") or "localhost"
local token = os.getenv("COMPARE_TOKEN") or ""

local medicines = {}
for id in string.gmatch(os.getenv("COMPARE_MEDICINES") or "", "%d+") do
  medicines[#medicines + 1] = tonumber(id)
end
if #medicines == 0 then
  for id = 1, 50 do medicines[id] = id end
end

local threads_started = 0
function setup(thread)
  thread:set("thread_no", threads_started)
  threads_started = threads_started + 1
end

local MIX = { "list", "detail", "list", "detail", "list", "detail", "list", "detail", "list", "sale",
              "detail", "list", "detail", "list", "detail", "list", "detail", "list", "detail", "sale" }

-- the k-th sale's two lines: (medicine, units) twice, different medicines
local function sale_lines(k)
  local n = #medicines
  local a = (k * 7) % n + 1
  local b = (k * 7 + 13) % n + 1
  if b == a then b = a % n + 1 end
  return { { medicines[a], k % 2 + 1 }, { medicines[b], (k + 1) % 2 + 1 } }
end

local function sale_body(k)
  local lines = {}
  for _, l in ipairs(sale_lines(k)) do
    if dialect == "peer" then
      lines[#lines + 1] = string.format('{"medicine_id":%d,"qty":%d}', l[1], l[2])
    else
      lines[#lines + 1] = string.format('{"medicine_id":%d,"quantity":%d}', l[1], l[2])
    end
  end
  if dialect == "peer" then
    return string.format('{"customer_name":"wrk customer %d","lines":[%s]}', k, table.concat(lines, ","))
  end
  return string.format('{"customer_name":"wrk customer %d","payment_method":"card","lines":[%s]}',
    k, table.concat(lines, ","))
end

local function build(kind, host, k)
  local headers = { Host = host }
  if dialect == "apotheca" then headers["Authorization"] = "Bearer " .. token end
  if kind == "list" then
    return wrk.format("GET", dialect == "peer" and "/api/medicines/" or "/api/v1/medicines?per_page=50", headers)
  elseif kind == "detail" then
    return wrk.format("GET", dialect == "peer" and "/api/medicines/1/" or "/api/v1/medicines/1", headers)
  elseif kind == "sale" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", dialect == "peer" and "/api/bills/" or "/api/v1/sales", headers, sale_body(k))
  end
  error("unknown scenario " .. tostring(kind))
end

local reqs = {}
local pos = 0

function init(args)
  local hosts = {}
  for i = 1, ntenants do hosts[#hosts + 1] = "t" .. i .. "." .. domain end
  local nh = #hosts
  if scenario == "mix" then
    math.randomseed(1000 + (thread_no or 0))
    for i = 0, math.max(2000, 20 * nh) - 1 do
      reqs[#reqs + 1] = build(MIX[i % 20 + 1], hosts[math.random(nh)], i)
    end
  else
    local size = (scenario == "sale") and nh * 60 or nh
    for i = 0, size - 1 do
      reqs[#reqs + 1] = build(scenario, hosts[i % nh + 1], i)
    end
  end
  pos = ((thread_no or 0) * 7) % #reqs
end

function request()
  pos = pos % #reqs + 1
  return reqs[pos]
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,' ..
    '"errors":%d,"err_status":%d,"err_socket":%d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.status + e.connect + e.read + e.write + e.timeout, e.status,
    e.connect + e.read + e.write + e.timeout))
end
