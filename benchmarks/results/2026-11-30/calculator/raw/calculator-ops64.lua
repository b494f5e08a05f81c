-- ops=64 for benchmarks/suites/calculator.sh
expression = "1+1-6+2-7+3-8+4-9+5-1+6-2+7-3+8-4+9-5+1-6+2-7+3-8+4-9+5-1+6-2+7-3+8-4+9-5+1-6+2-7+3-8+4-9+5-1+6-2+7-3+8-4+9-5+1-6+2-7+3-8+4-9+5-1"
expected = "-15"
dofile("/work/main/benchmarks/load/calculator.lua")
local check_answers = done
dofile("/work/main/benchmarks/lib/latency.lua")
local print_latency = done
function done(summary, latency, requests)
  check_answers(summary, latency, requests)
  print_latency(summary, latency, requests)
end
