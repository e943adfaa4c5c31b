-- wrk script shared by every run of bench/run.sh.
--   CONVO_TOKEN  bearer token (required)
--   CONVO_PATH   request path and query; "{page}" in it is replaced by a random page
--   CONVO_PAGES  highest page for "{page}" (default 2000)
-- At the end it prints one machine-readable line that run.sh turns into a table row.

local token = os.getenv("CONVO_TOKEN")
local path = os.getenv("CONVO_PATH")
local pages = tonumber(os.getenv("CONVO_PAGES") or "2000")
local random_page = string.find(path, "{page}", 1, true) ~= nil

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/vnd.Nexhealth+json;version=2"

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(seed or 1)
end

function request()
  if random_page then
    local p = string.gsub(path, "{page}", tostring(math.random(1, pages)))
    return wrk.format(nil, p)
  end
  return wrk.format(nil, path)
end

-- The RESULT line both bench scripts parse (wrk runs from the repository root).
dofile("bench/result.lua")
