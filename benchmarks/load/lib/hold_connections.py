#!/usr/bin/env python3
"""Opens N keep-alive HTTP connections to 127.0.0.1:PORT and holds them open.

    hold_connections.py PORT N READY_FILE [HOLD_SECONDS=60] [PATH=/]

Each connection sends one GET PATH and reads its whole response, so the request has
crossed every hop of a proxy pair and each hop holds its side of the connection.
Then the number of connections that got a response is written to READY_FILE and
the process sleeps (bounded by HOLD_SECONDS) until the caller stops it.
Bounded: 60 s to open them all; a connection that fails is counted out, not retried.
"""
import os
import socket
import sys
import time

REQUEST = "GET {} HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def main():
    port, count, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    hold_seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    request = REQUEST.format(sys.argv[5] if len(sys.argv) > 5 else "/").encode()
    deadline = time.monotonic() + 60.0
    held, failed = [], 0
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(request)
            if read_response(sock):
                held.append(sock)
            else:
                failed += 1
                sock.close()
        except OSError as error:
            failed += 1
            print(f"connection failed: {error}", file=sys.stderr)
    print(f"held {len(held)}, failed {failed}", file=sys.stderr)
    with open(ready + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{len(held)}\n")
    os.replace(ready + ".tmp", ready)
    time.sleep(hold_seconds)


if __name__ == "__main__":
    main()
