"""mod-svc: the calculator's `%` operator, in Python's standard library only.

It answers the same contract as the C++ operator services (add-svc, ...):
GET /api/v1/execute?l=<int>&r=<int> -> 200 with the bare integer, and errors as
{"error": "<code>", "reason": "<text>"}. It knows nothing of Connect or mTLS: it binds
127.0.0.1 and is reached only through a coromesh-sidecar in front of it.

  operands.py   the domain: query parsing, 64-bit operands, the truncated remainder
  http_server.py  a small asyncio HTTP/1.1 server with the framework's limits
  metrics.py    the framework's request metrics, in Prometheus text format
  consul.py     registration in Consul over its HTTP API (urllib)
  settings.py   flags and environment variables, named as the C++ binaries name them
  main.py       wiring, signals and the shutdown sequence
"""
