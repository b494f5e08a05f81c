"""mod-svc's HTTP server in-process on a free loopback port, its event loop on a thread
of its own, and a raw-socket client for requests http.client refuses to send."""

import asyncio
import socket
import threading

from modsvc import main, metrics
from modsvc.http_server import HttpServer, Limits

TIMEOUT = 30.0  # generous: a loaded CI machine is slow, and no test waits for it to pass


class RunningServer:
    def __init__(self, limits=Limits()):
        self.metrics = metrics.HttpServerMetrics("mod-svc")
        self.server = HttpServer(main.routes(self.metrics), self.metrics, limits)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self.run(self.server.start("127.0.0.1", 0))

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT)

    def stop(self, grace=5.0):
        """Stops the server; returns how many requests were cut off."""
        return self.run(self.server.stop(grace))

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)

    def exchange(self, data, sock=None):
        """Sends raw bytes on a new connection (or `sock`), half-closes a new one, and
        reads until the server closes; b"" if it closed without answering."""
        own = sock is None
        sock = sock or self.connect()
        try:
            sock.sendall(data)
            if own:
                sock.shutdown(socket.SHUT_WR)
            return read_until_closed(sock)
        finally:
            if own:
                sock.close()


def read_until_closed(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def metric_value(exposition, series):
    """The value of the series written exactly as `series`, 0 when absent."""
    for line in exposition.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0
