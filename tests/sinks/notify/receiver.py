"""A real HTTP receiver for notifications: webhooks (with signature verification) and
Apprise's json:// and form:// posts.

Records every request (path, headers, body) in arrival order; per path it can
answer a sequence of statuses before 200s, or hold requests from the n-th on
until it is stopped (a delivery "in flight" for the crash tests). Verification of
``Lanscope-Signature`` is the receiver's side of the documented scheme:
HMAC-SHA256 over ``"<t>." + body``, with the time checked for freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.server import FakeHandler, FakeServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def verify(secret: str, received: Received, *, tolerance_secs: float = 300.0) -> bool:
    """Whether ``received`` carries a valid, fresh Lanscope-Signature for ``secret``."""
    header = received.header("Lanscope-Signature")
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{at}.".encode() + received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", "")) and abs(time.time() - at) <= tolerance_secs


class _Handler(FakeHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.read_body()
        status, gate = self.server.record(Received(self.path, dict(self.headers), body, time.time()))
        if gate is not None:
            gate.wait()
            if self.server.stopping:
                self.close_connection = True
                return
        self.send_json(status, {"ok": status < 300})


class Receiver(FakeServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.received: list[Received] = []
        self.stopping = False
        self._statuses: dict[str, list[int]] = {}
        self._hold_from: dict[str, int] = {}
        self._counts: dict[str, int] = {}

    def answer(self, path: str, *statuses: int) -> None:
        """Answer the next requests to ``path`` with these statuses, then 200."""
        with self.lock:
            self._statuses[path] = list(statuses)

    def hold(self, path: str, from_request: int) -> None:
        """Requests to ``path`` from the ``from_request``-th on (1-based) get no answer until stop()."""
        with self.lock:
            self._hold_from[path] = from_request

    def record(self, received: Received) -> tuple[int, threading.Event | None]:
        path = received.path.split("?", 1)[0]
        with self.lock:
            self.received.append(received)
            self._counts[path] = count = self._counts.get(path, 0) + 1
            statuses = self._statuses.get(path)
            status = statuses.pop(0) if statuses else 200
            held = path in self._hold_from and count >= self._hold_from[path]
        return status, (self.release if held else None)

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path.split("?", 1)[0] == path]

    def stop(self) -> None:
        self.stopping = True
        super().stop()

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on a free 127.0.0.1 port for the test (import the fixture where it is used)."""
    with Receiver() as server:
        yield server
