-- wrk script: POST one new row per request to /events (JSON body, a key unique across
-- threads and requests), as a client inserting single rows would.
local counter = 0
local threads = 0
local id = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"source":%d,"seq":%d,"payload":"event number %d from wrk thread %d"}',
    id, counter, counter, id)
  return wrk.format(nil, "/events", nil, body)
end
