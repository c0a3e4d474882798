-- POST /v1/checks over the seeded contacts, one contact per line of the file given as the
-- first script argument; the second is "true" or "false" for record.
--   wrk -s bench/wrk/checks.lua <url> -- contacts.txt true
-- done() prints one line "WRK_JSON {...}" with exact figures (wrk's text rounds them), and
-- counts the answers' shape: non-2xx, allowed and refused decisions.


local threads = {}

-- WRK_PORTS="8001,8002": API processes on several ports; threads take them in turn.
local ports = {}
for port in string.gmatch(os.getenv("WRK_PORTS") or "", "%d+") do
  ports[#ports + 1] = port
end

function setup(thread)
  if #ports > 0 then
    thread.addr = wrk.lookup(wrk.host, ports[#threads % #ports + 1])[1]
  end
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local record = args[2] or "false"
  local bodies = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      bodies[#bodies + 1] = string.format(
        '{"contact":"%s","channel":"sms","record":%s}', line, record)
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  requests_ = {}
  for i, body in ipairs(bodies) do
    requests_[i] = wrk.format(nil, nil, nil, body)
  end
  -- Each thread starts at its own place in the list so that threads do not move in step.
  cursor = (id * 7919) % #requests_
  non2xx, allowed, refused = 0, 0, 0
end

function request()
  cursor = cursor % #requests_ + 1
  return requests_[cursor]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif string.find(body, '"allowed":%s*true') then
    allowed = allowed + 1
  elseif string.find(body, '"allowed":%s*false') then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local counts = { non2xx = 0, allowed = 0, refused = 0 }
  for _, thread in ipairs(threads) do
    for name, _ in pairs(counts) do
      counts[name] = counts[name] + thread:get(name)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
      .. '"max_us":%d,"non2xx":%d,"allowed":%d,"refused":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, counts.non2xx, counts.allowed, counts.refused,
    e.connect + e.read + e.write + e.timeout))
end
