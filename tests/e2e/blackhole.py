#!/usr/bin/env python3
"""A loopback port whose SYNs vanish, as a black-holed host's do, without root or rules.

    blackhole.py --port-file FILE [--duration S]

A listener with a backlog of 0 that never accepts, its accept queue filled by one
connection of its own: Linux then drops every further SYN to it (no RST, no SYN-ACK),
so a connect to it hangs until the caller gives up. The port is checked first (a probe
connect must still be pending after 300 ms; exit 1 otherwise, so a scenario cannot pass
for the wrong reason), then written to FILE; the port is held until SIGTERM, FILE.stop
appears, or S seconds (default 300) pass.
"""
import argparse
import errno
import os
import select
import signal
import socket
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--duration", type=float, default=300)
    args = parser.parse_args()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.create_connection(address, timeout=5)  # the queue's one place

    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setblocking(False)
    code = probe.connect_ex(address)
    # Writable means the connect ended (accepted or refused); still pending means dropped.
    _, writable, _ = select.select([], [probe], [], 0.3)
    if code != errno.EINPROGRESS or writable:
        sys.exit("blackhole.py: a connect to a full accept queue was answered: this kernel "
                 "does not drop such SYNs")
    probe.close()

    with open(args.port_file + ".tmp", "w") as out:
        out.write(f"{address[1]}\n")
    os.rename(args.port_file + ".tmp", args.port_file)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline and not os.path.exists(args.port_file + ".stop"):
        time.sleep(0.2)
    filler.close()
    listener.close()


if __name__ == "__main__":
    main()
