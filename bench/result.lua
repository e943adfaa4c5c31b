-- Shared by the wrk scripts of bench/: one machine-readable line at the end of a run,
-- "RESULT req/s p50_ms p99_ms bytes_per_response errors requests".

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT %.1f %.2f %.2f %d %d %d\n",
    summary.requests / secs,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.requests > 0 and math.floor(summary.bytes / summary.requests) or 0,
    errors,
    summary.requests))
end
