-- The seed's benchmark request (its calculator.lua): POST /api/v1/compute with the
-- expression below, 16 operator calls, result 9.
--   wrk -t5 -c5 -d15s --latency -s benchmarks/load/calculator.lua http://127.0.0.1:8080/api/v1/compute
-- Unlike the seed's script it also checks every answer: at the end it prints
-- "wrong answers: N", the 200s whose body was not {"result":9} (wrk itself counts the
-- non-2xx ones).
-- Another expression: a script that sets `expression` and `expected` (its result) and
-- then dofile()s this one (benchmarks/suites/calculator.sh writes such scripts).
expression = expression or "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"
expected = expected or "9"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{ "expression": "%s"}', expression)

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

wrong = 0 -- per thread (each wrk thread has its own Lua state)

function response(status, headers, body)
  if status == 200 and body ~= '{"result":' .. expected .. '}' then
    wrong = wrong + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("wrong")
  end
  io.write(string.format("wrong answers: %d\n", total))
end
