"""Serving the dashboard: the listening socket, uvicorn in the caller's event loop, shutdown.

The socket is bound first (``bind``), before anything else starts, so a taken
port is one clear error and not a half-started pipeline. uvicorn serves it inside
the event loop of ``lanscope run`` or ``lanscope web``; its ``capture_signals``
(which would take SIGTERM/SIGINT from the command and raise them again on exit) is
switched off: the command owns the signals and stops the dashboard with ``stop()``.
A test fails if uvicorn stops calling that hook.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn

from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.web.app import Dashboard, create_app, render_item, templates
from lanscope.web.auth import Guard, check_settings
from lanscope.web.live import Broadcaster
from lanscope.web.source import Source

log = logging.getLogger(__name__)
SHUTDOWN_SECS = 3.0


def bind(config: Config) -> socket.socket:
    """The dashboard's listening socket; a UsageError that says what to do if it cannot be had."""
    web = config.web
    check_settings(web)
    where = f"{web.address}:{web.port}" if ":" not in web.address else f"[{web.address}]:{web.port}"
    try:
        infos = socket.getaddrinfo(web.address, web.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"web.address {web.address!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"web: {where} is already in use (another lanscope?): set web.port to a free "
                             "port, or web.enabled: false (lanscope run --no-web)") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UsageError(f"web: not allowed to listen on {where} (ports below 1024 need privileges): "
                             "set web.port") from None
        raise UsageError(f"web: cannot listen on {where}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling (the command owns SIGTERM/SIGINT)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The dashboard on a bound socket, until stop()."""

    def __init__(self, config: Config, sock: socket.socket, *, url: str | None = None) -> None:
        self.config = config
        self.sock = sock
        env = templates()
        self.live = Broadcaster(config.web.feed_events, config.web.max_streams, render_item(env))
        self.source = Source(config, url=url, on_event=self.live.publish, backlog=config.web.feed_events)
        self.dashboard = Dashboard(config, self.source, self.live, Guard(config.web), env)
        uv_config = uvicorn.Config(create_app(self.dashboard), lifespan="off", log_level="warning",
                                   access_log=False, server_header=False, ws="none", http="h11",
                                   timeout_graceful_shutdown=int(SHUTDOWN_SECS), log_config=None)
        uv_config.load()
        self.server = _Server(uv_config)
        self._stopped = asyncio.Event()
        self.ready = asyncio.Event()       # serving, and joined the bus if one was there at start

    @property
    def url(self) -> str:
        return url_of(self.sock)

    async def run(self) -> None:
        """Serve until stop(); the bus is joined now if a pipeline runs, else later when one starts."""
        await self.source.start()
        serving = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="web:serve")
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            while not (self.server.started or serving.done() or self._stopped.is_set()):
                await asyncio.sleep(0.01)   # uvicorn has no startup event; this takes a few ms
            self.ready.set()
            await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
            self.live.close()               # end the server-sent-event streams first
            self.server.should_exit = True
            await serving
        finally:
            stopped.cancel()
            await self.source.close()
            with contextlib.suppress(OSError):
                self.sock.close()

    def stop(self) -> None:
        self._stopped.set()
