-- ops=16 for benchmarks/suites/calculator.sh
expression = "1+1+2+3+4+5+6-1-2-3-4-5-6+9+8-4-5"
expected = "9"
dofile("/work/main/benchmarks/load/calculator.lua")
local check_answers = done
dofile("/work/main/benchmarks/lib/latency.lua")
local print_latency = done
function done(summary, latency, requests)
  check_answers(summary, latency, requests)
  print_latency(summary, latency, requests)
end
