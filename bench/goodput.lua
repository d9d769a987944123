-- wrk script for bench/goodput.py: POSTs the JSON bodies of a file (one per line) in turn and
-- counts answers by status; run with one connection per thread (-tN -cN), so that request()
-- and response() alternate and each 200's latency is its own. Prints one JSON line.
-- wrk -tN -cN -dSs -s bench/goodput.lua URL -- BODIES_FILE MAX_RESPONSES_PER_THREAD
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } goodput_timespec;
int clock_gettime(int clock, goodput_timespec *now);
]])
local clock = ffi.new("goodput_timespec")

local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local threads = {}
local bodies = {}
local counter = 0
local limit = 0
local sent = 0
-- Per thread (each has its own Lua state); done() gathers them through setup's table.
ok, busy, other, no_retry_after, responses = 0, 0, 0, 0, 0
hist = {} -- latency of the 200s in 0.1 ms buckets

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  limit = tonumber(args[2]) or 0
  counter = math.random(#bodies)
end

function request()
  counter = counter % #bodies + 1
  sent = now_us()
  return wrk.format("POST", "/tag", { ["Content-Type"] = "application/json" }, bodies[counter])
end

function response(status, headers, body)
  responses = responses + 1
  if status == 200 then
    ok = ok + 1
    local bucket = math.floor((now_us() - sent) / 100)
    hist[bucket] = (hist[bucket] or 0) + 1
  elseif status == 503 then
    busy = busy + 1
    if headers["retry-after"] == nil and headers["Retry-After"] == nil then
      no_retry_after = no_retry_after + 1
    end
  else
    other = other + 1
  end
  if limit > 0 and responses >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local t = { ok = 0, busy = 0, other = 0, no_retry_after = 0 }
  local merged = {}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(t) do
      t[key] = t[key] + thread:get(key)
    end
    for bucket, count in pairs(thread:get("hist")) do
      merged[bucket] = (merged[bucket] or 0) + count
    end
  end
  local keys = {}
  for bucket, _ in pairs(merged) do
    keys[#keys + 1] = bucket
  end
  table.sort(keys)
  local p99, seen = 0, 0
  for _, bucket in ipairs(keys) do
    seen = seen + merged[bucket]
    if seen >= 0.99 * t.ok then
      p99 = (bucket + 1) / 10
      break
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"ok": %d, "busy": %d, "other": %d, "no_retry_after": %d, "socket_errors": %d, '
      .. '"seconds": %.3f, "p99_ok_ms": %.1f}\n',
    t.ok, t.busy, t.other, t.no_retry_after, e.connect + e.read + e.write + e.timeout,
    summary.duration / 1e6, p99
  ))
end
