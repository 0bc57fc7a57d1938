-- wrk script: GET a path built from BENCH_PATH (a Lua format string with one %d) and a
-- random integer in [1, BENCH_MAX], so every request looks up a different row.
local pattern = os.getenv("BENCH_PATH")
local max = tonumber(os.getenv("BENCH_MAX"))
math.randomseed(os.time())
request = function()
  return wrk.format("GET", string.format(pattern, math.random(1, max)))
end
