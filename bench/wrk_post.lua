-- wrk script for bench/service_load.py: POSTs the JSON bodies of a file (one per line) in turn,
-- stops each thread after a fixed number of responses, and prints one JSON line of results.
-- wrk -t2 -c64 -d30s -s bench/wrk_post.lua URL -- BODIES_FILE MAX_RESPONSES_PER_THREAD
local bodies = {}
local counter = 0
local responses = 0
local limit = 0

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  limit = tonumber(args[2]) or 0
  counter = math.random(#bodies)
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", "/tag", { ["Content-Type"] = "application/json" }, bodies[counter])
end

function response(status, headers, body)
  responses = responses + 1
  if limit > 0 and responses >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "non_2xx": %d, "socket_errors": %d, '
      .. '"p50": %.3f, "p95": %.3f, "p99": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000
  ))
end
