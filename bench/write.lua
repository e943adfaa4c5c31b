-- wrk script for bench/write.sh: POSTs pre-generated bodies, one per request, never twice
-- (each wrk thread takes every other line).
--   CONVO_REQUESTS  file of lines "signature<TAB>body" (signature may be empty)
--   CONVO_PATH      request path and query
--   CONVO_TOKEN     bearer token (optional)
--   CONVO_TYPE      Content-Type of the bodies

local lines = {}
for line in io.lines(os.getenv("CONVO_REQUESTS")) do
  lines[#lines + 1] = line
end
local path = os.getenv("CONVO_PATH")
local token = os.getenv("CONVO_TOKEN")
local content_type = os.getenv("CONVO_TYPE")

local threads = 0
function setup(thread)
  thread:set("offset", threads)
  threads = threads + 1
end

local i = 0
function request()
  local line = lines[((offset or 0) + i * 2) % #lines + 1]
  i = i + 1
  local tab = string.find(line, "\t", 1, true)
  local signature = string.sub(line, 1, tab - 1)
  local body = string.sub(line, tab + 1)
  local headers = { ["Content-Type"] = content_type, ["Host"] = "bench.local" }
  if token and token ~= "" then headers["Authorization"] = "Bearer " .. token end
  if signature ~= "" then headers["X-Twilio-Signature"] = signature end
  return wrk.format("POST", path, headers, body)
end

-- The RESULT line both bench scripts parse (wrk runs from the repository root).
dofile("bench/result.lua")
