"""mod-svc's entry point: settings, the routes, Consul, and the shutdown sequence.

Shutdown on SIGTERM or SIGINT: leave Consul first (callers' sidecars stop choosing this
instance while it still answers), then stop accepting, let requests being served finish
for --shutdown-grace, and exit 0.
"""

import asyncio
import signal
import sys
import time

from modsvc import log as logging
from modsvc import metrics, operands
from modsvc.consul import ConsulError, Registration
from modsvc.http_server import HttpServer, Limits, Response, json_error, text_response
from modsvc.log import log
from modsvc.settings import parse_or_exit


def execute(query):
    """GET /api/v1/execute?l=<int>&r=<int> -> 200 with the bare remainder."""
    try:
        l = operands.operand(query, "l")
        r = operands.operand(query, "r")
        return text_response(str(operands.truncated_remainder(l, r)))
    except operands.OperandError as error:
        return json_error(error.status, error.code, error.reason)


def routes(server_metrics):
    def health(_query):
        return Response(200, b'{"status":"passing"}', "application/json")

    def exposition(_query):
        return Response(200, server_metrics.render().encode(), metrics.CONTENT_TYPE)

    return {
        b"/api/v1/execute": ("mod", execute),
        b"/health": ("health", health),
        b"/metrics": ("metrics", exposition),
    }


async def keep_registered(registration, interval, stopping):
    """Registers, then re-registers whenever the agent has lost the instance (an agent
    restart) until `stopping` is set. Consul being down is logged once per outage."""
    available = True
    while not stopping.is_set():
        try:
            if not await asyncio.to_thread(registration.is_registered):
                await asyncio.to_thread(registration.register)
                log("info", "consul.registered", id=registration.service_id)
            if not available:
                log("info", "consul.available")
            available = True
        except ConsulError as error:
            if available:
                log("warn", "consul.unavailable", error=str(error))
            available = False
        try:
            await asyncio.wait_for(stopping.wait(), interval)
        except TimeoutError:
            pass


async def serve(settings):
    server_metrics = metrics.HttpServerMetrics(settings.name)
    limits = Limits(
        header_timeout=settings.header_timeout,
        idle_timeout=settings.idle_timeout,
        max_connections=settings.max_connections,
    )
    server = HttpServer(routes(server_metrics), server_metrics, limits)
    try:
        port = await server.start("127.0.0.1", settings.port)
    except OSError as error:
        log("error", "http.listen.failed", address="127.0.0.1", port=settings.port, error=error)
        return 1
    log("info", "http.listen", address="127.0.0.1", port=port)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signo in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signo, lambda s=signo: on_signal(s, stopping))

    registration = Registration(settings, port) if settings.consul_register else None
    registering = None
    if registration:
        registering = asyncio.create_task(
            keep_registered(registration, settings.resync_interval, stopping)
        )
    log(
        "info", "service.started", service=settings.name,
        id=registration.service_id if registration else f"{settings.name}-{port}", port=port,
        consul=settings.consul if registration else "off",
    )
    await stopping.wait()

    began = time.monotonic()
    log("info", "service.shutdown.begin")
    if registering:
        await registering
        try:
            await asyncio.to_thread(registration.deregister)
            log("info", "consul.deregistered", id=registration.service_id)
        except ConsulError as error:
            log("warn", "consul.deregister.failed", error=str(error))
    cut_off = await server.stop(settings.shutdown_grace)
    log("info", "service.shutdown.done", cut_off=cut_off, took=round(time.monotonic() - began, 6))
    return 0


def on_signal(signo, stopping):
    log("info", "service.signal", signal=int(signo))
    stopping.set()


def main(argv=None):
    settings = parse_or_exit(sys.argv[1:] if argv is None else argv)
    logging.set_level(settings.log_level)
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
