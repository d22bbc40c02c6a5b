"""Generic webhooks: a JSON POST of the event, signed, with an idempotency key.

The body is the event exactly as on the bus (``lanscope schema`` describes it); a
digest posts ``{"type": "notify_digest", "rule", "events": [...]}``. Headers:

- ``Idempotency-Key`` and ``Lanscope-Event-Id``: the event id (a digest's key), the
  same on every retry and after a restart, so a receiver can drop a second copy;
- ``Lanscope-Signature: t=<unix time>,v1=<hex>`` when the target has a ``secret``:
  HMAC-SHA256 over ``"<t>." + body`` (verify the time is recent to refuse replays);
- with ``cloudevents: true``, CloudEvents 1.0 binary mode: ``ce-specversion``,
  ``ce-id`` (the event id), ``ce-source``, ``ce-type``, ``ce-time``, ``ce-subject``.

2xx is delivered; 408, 425, 429, 5xx and transport errors are retried; any other
status is not (the receiver refuses the notification as it is).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec

from lanscope.net.tls import ssl_context

from . import _redact
from .dispatch import DeliveryError
from .model import Note
from .targets import WebhookTarget

RETRIED_STATUS = frozenset({408, 425, 429})
CE_SOURCE = "/lanscope/notify"
USER_AGENT = "lanscope-notify"


def signature(secret: str, body: bytes, at: int) -> str:
    """The ``Lanscope-Signature`` header's value for ``body`` sent at unix time ``at``."""
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def body_of(note: Note) -> bytes:
    if note.kind != "digest":
        return bytes(note.events[0])
    return msgspec.json.encode({"type": "notify_digest", "id": note.event_id, "rule": note.rule,
                                "title": note.title, "events": note.events})


def ce_type(note: Note) -> str:
    if note.kind == "digest":
        return "io.lanscope.notify.digest"
    if note.kind.startswith("finding_"):
        return f"io.lanscope.finding.{note.kind.removeprefix('finding_')}"
    return f"io.lanscope.host_changed.{note.kind}"


class WebhookSender:
    kind = "webhook"

    def __init__(self, name: str, target: WebhookTarget, clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.target = target
        self.clock = clock
        self._client: httpx.AsyncClient | None = None
        url = urlsplit(str(target.url))
        self.where = f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}"   # for logs
        _redact.guard_logger("httpx")      # it logs request URLs (with any token in them) at INFO
        _redact.register(_redact.url_secrets(str(target.url)))
        _redact.register({str(target.secret)} if target.secret else set())
        _redact.register(str(v) for v in target.headers.values())

    async def start(self) -> None:
        tls = self.target.tls
        verify: Any = ssl_context(tls) if tls is not None else True
        self._client = httpx.AsyncClient(timeout=self.target.timeout_secs, verify=verify,
                                         follow_redirects=False, headers={"User-Agent": USER_AGENT})

    def request(self, note: Note) -> tuple[bytes, dict[str, str]]:
        """The body and headers of ``note``'s POST (a new signature time on each call)."""
        body = body_of(note)
        headers = {"Content-Type": "application/json", "Idempotency-Key": note.event_id,
                   "Lanscope-Event-Id": note.event_id, "Lanscope-Rule": note.rule,
                   "Lanscope-Kind": note.kind}
        if self.target.cloudevents:
            headers |= {"ce-specversion": "1.0", "ce-id": note.event_id, "ce-source": CE_SOURCE,
                        "ce-type": ce_type(note), "ce-subject": note.subject,
                        "ce-time": note.observed_at.isoformat().replace("+00:00", "Z")}
        if self.target.secret:
            headers["Lanscope-Signature"] = signature(str(self.target.secret), body, int(self.clock()))
        headers |= {name: str(value) for name, value in self.target.headers.items()}
        return body, headers

    async def send(self, note: Note) -> None:
        assert self._client is not None, "start() first"
        body, headers = self.request(note)
        try:
            response = await self._client.post(str(self.target.url), content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = f"POST to {self.where}: {type(exc).__name__}: {exc}"
            raise DeliveryError(_redact.redact(reason)) from None
        if response.is_success:
            return
        status = response.status_code
        retry = status in RETRIED_STATUS or status >= 500
        raise DeliveryError(f"POST to {self.where}: HTTP {status} {response.reason_phrase}", retry=retry)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
