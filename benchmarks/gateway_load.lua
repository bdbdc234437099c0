-- wrk script of benchmarks/gateway_load.py: POST /v1/translate with one sentence per request, every sentence
-- different (thread id + counter), so neither coalescing nor a translation memory can answer from a previous one.
-- A response counts as ok when it is a 200 holding the fake engine's "[de] " prefix; done() prints one line that
-- gateway_load.parse_wrk reads (status counts and the latency percentiles in microseconds).

local threads = {}
local counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  ok = 0
  bad = 0
end

local words = {"price", "colour", "weight", "owner", "history", "shape", "origin", "purpose"}

function request()
  counter = counter + 1
  local body = string.format(
    '{"texts": ["Load test sentence %d-%d: the %s of item %d is unknown."]}',
    tid, counter, words[counter % #words + 1], (counter * 7919) % 100003
  )
  return wrk.format("POST", "/v1/translate", {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 and body:find("[de] ", 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local n_ok, n_bad = 0, 0
  for _, t in ipairs(threads) do
    n_ok = n_ok + t:get("ok")
    n_bad = n_bad + t:get("bad")
  end
  io.write(string.format(
    "GATEWAY_LOAD ok=%d bad=%d requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    n_ok, n_bad, summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
