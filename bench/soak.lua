-- wrk script for bench/soak.sh: a mix of the API's traffic at a paced rate.
--   CONVO_TOKEN     bearer token
--   CONVO_DIR       where soak.sh wrote sends.txt, inbound.txt and seen.txt
--   CONVO_SINCE     updated_since for the polling requests
--   CONVO_PAGES     highest list page
--   CONVO_DELAY_MS  pause before each request on a connection (sets the rate)
--   CONVO_MINUTE    which minute of the soak this run is (keeps write bodies distinct)
-- Per 100 requests: 50 list pages, 20 polls, 15 staff sends, 10 inbound webhooks, 5 seen.

local token = os.getenv("CONVO_TOKEN")
local dir = os.getenv("CONVO_DIR")
local since = os.getenv("CONVO_SINCE")
local pages = tonumber(os.getenv("CONVO_PAGES") or "2000")
local pause = tonumber(os.getenv("CONVO_DELAY_MS") or "0")
local minute = tonumber(os.getenv("CONVO_MINUTE") or "0")
local scope = "subdomain=summit-dental&location_id=1"

local function load(name)
  local lines = {}
  for line in io.lines(dir .. "/" .. name) do lines[#lines + 1] = line end
  return lines
end
local sends, inbound, seen = load("sends.txt"), load("inbound.txt"), load("seen.txt")

local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  math.randomseed((id or 0) * 7919 + minute * 104729 + 1)
end

function delay()
  return pause
end

local n = 0
local function next_line(lines)
  n = n + 1
  -- Two wrk threads, each its own half, each minute its own stretch.
  return lines[(minute * 40000 + n * 2 + (id or 0)) % #lines + 1]
end

local function split(line)
  local tab = string.find(line, "\t", 1, true)
  return string.sub(line, 1, tab - 1), string.sub(line, tab + 1)
end

local bearer = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }

function request()
  local r = math.random(100)
  if r <= 50 then
    return wrk.format("GET", "/conversations?" .. scope .. "&per_page=20&messages=5&page=" ..
      math.random(1, pages), bearer)
  elseif r <= 70 then
    return wrk.format("GET", "/conversations?" .. scope .. "&per_page=20&messages=5&updated_since=" ..
      since, bearer)
  elseif r <= 85 then
    local _, body = split(next_line(sends))
    return wrk.format("POST", "/messages?" .. scope, bearer, body)
  elseif r <= 95 then
    local signature, form = split(next_line(inbound))
    return wrk.format("POST", "/sms/inbound", {
      ["Host"] = "bench.local",
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Twilio-Signature"] = signature,
    }, form)
  else
    local message, body = split(next_line(seen))
    return wrk.format("POST", "/messages/" .. message .. "/seen?" .. scope, bearer, body)
  end
end

dofile("bench/result.lua")
