"""The connection to NATS: connect, provision, publish with de-duplication, KV claims.

Every NATS call of lanscope goes through here or the runner. Secrets (password,
token, creds) are handed to nats-py and never logged: the log names the
servers and the kind of authentication only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError
from lanscope.runtime.ids import content_id
from lanscope.runtime.topology import StageSpec
from schemas import STREAMS, Event, StreamSpec, encode, stream_for, subject_for

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
CLAIMS_BUCKET = "lanscope_claims"

# Errors after which the same publish (same Nats-Msg-Id) is safe and useful to retry.
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


class BusError(LanscopeError):
    """NATS refused or could not be reached; the message names the server, never a secret."""


@dataclass(frozen=True)
class Provisioned:
    kind: str       # stream | consumer
    name: str       # LANSCOPE_FACTS | LANSCOPE_FACTS/port_probe
    action: str     # created | updated | unchanged
    detail: str = ""


def servers(config: NatsConfig, url: str | None = None) -> list[str]:
    raw = url if url is not None else config.url
    return [part.strip() for part in raw.split(",") if part.strip()]


def tls_context(config: NatsConfig) -> ssl.SSLContext | None:
    tls = config.tls
    if tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _auth_kind(config: NatsConfig) -> str:
    if config.creds_file:
        return "creds file"
    if config.token:
        return "token"
    if config.user:
        return f"user {config.user}"
    return "no auth"


class Bus:
    """A connected NATS client with JetStream, for one process."""

    def __init__(self, nc: NatsClient, config: NatsConfig, state: dict[str, bool] | None = None) -> None:
        self.nc = nc
        self._state = state if state is not None else {}
        self.config = config
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self._publish_timeout = 5.0

    # ------------------------------------------------------------------ connection

    @classmethod
    async def connect(cls, config: NatsConfig, *, url: str | None = None,
                      name: str | None = None) -> Bus:
        urls = servers(config, url)
        if not urls:
            raise BusError("no NATS server: set nats.url (or let `lanscope run` start the embedded one)")
        # "down" until the first connect succeeds: failed first attempts end in one BusError.
        state = {"down": True, "closing": False}
        last_error: list[BaseException] = []

        async def disconnected() -> None:
            if not state["down"] and not state["closing"]:
                state["down"] = True
                log.warning("disconnected from NATS; reconnecting")

        async def reconnected() -> None:
            state["down"] = False
            log.info("reconnected to NATS at %s", nc.connected_url.netloc if nc.connected_url else "?")

        async def error(exc: Exception) -> None:
            last_error[:] = [exc]
            # nats-py reports every failed reconnect attempt here; one line per outage is enough.
            if not state["down"] and not state["closing"]:
                log.warning("NATS connection error: %s", type(exc).__name__)

        options: dict[str, Any] = {
            "servers": urls,
            "name": name or config.name,
            "connect_timeout": config.connect_timeout_secs,
            "allow_reconnect": True,
            # Bounded for the first connect (a wrong url fails fast); unbounded once connected.
            "max_reconnect_attempts": 2,
            "reconnect_time_wait": 0.5,
            "drain_timeout": 5,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
            "error_cb": error,
            "tls": tls_context(config),
        }
        if config.user:
            options["user"] = config.user
            options["password"] = str(config.password or "")
        if config.token:
            options["token"] = str(config.token)
        if config.creds_file:
            options["user_credentials"] = config.creds_file
        # nats-py retries some first-connect failures (TLS) without end: bound it here.
        budget = max(config.connect_timeout_secs * 3 * len(urls), 5.0)
        try:
            nc = await asyncio.wait_for(nats.connect(**options), budget)
        except (OSError, nats.errors.Error, ssl.SSLError, TimeoutError) as exc:
            cause = last_error[0] if isinstance(exc, TimeoutError) and last_error else exc
            raise BusError(f"cannot connect to NATS at {', '.join(urls)} ({_auth_kind(config)}): "
                           f"{type(cause).__name__}: {cause}") from None
        nc.options["max_reconnect_attempts"] = -1
        state["down"] = False
        log.debug("connected to NATS at %s (%s)", nc.connected_url.netloc if nc.connected_url else urls[0],
                 _auth_kind(config))
        return cls(nc, config, state)

    async def close(self) -> None:
        """Drain: flush pending publishes and acks, then close."""
        if self.nc.is_closed:
            return
        self._state["closing"] = True
        try:
            await self.nc.drain()
        except Exception as exc:  # already closing, or the server is gone
            log.debug("drain failed (%s); closing", exc)
            await self.nc.close()

    async def __aenter__(self) -> Bus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ provisioning

    def stream_config(self, spec: StreamSpec) -> StreamConfig:
        c = self.config
        return StreamConfig(
            name=spec.name, subjects=list(spec.subjects), description=spec.description,
            retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
            num_replicas=c.replicas, max_age=c.max_age_days * 86400.0, max_bytes=c.max_bytes,
            duplicate_window=c.duplicate_window_secs,
        )

    def consumer_config(self, spec: StageSpec, filters: list[str]) -> ConsumerConfig:
        c = self.config
        return ConsumerConfig(
            name=spec.durable, durable_name=spec.durable, description=spec.description or None,
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait_secs or c.ack_wait_secs,
            # One delivery more than the runner's budget: the runner dead-letters a message it
            # sees for the (max_deliver+1)th time, so a message whose handler timed out or
            # crashed on its last try still reaches the DLQ instead of silently stopping.
            max_deliver=c.max_deliver + 1,
            max_ack_pending=c.max_ack_pending,
            filter_subjects=filters,
        )

    async def provision(self, specs: Iterable[StageSpec],
                        streams: Iterable[StreamSpec] = STREAMS) -> list[Provisioned]:
        """Create or update the streams and one durable pull consumer per consuming stage."""
        results: list[Provisioned] = []
        for stream in streams:
            results.append(await self._ensure_stream(self.stream_config(stream)))
        for spec in specs:
            for stream_name, filters in consumer_bindings(spec).items():
                results.append(await self._ensure_consumer(stream_name, self.consumer_config(spec, filters)))
        return results

    async def _ensure_stream(self, wanted: StreamConfig) -> Provisioned:
        assert wanted.name
        try:
            info = await self.js.stream_info(wanted.name)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(wanted)
            return Provisioned("stream", wanted.name, "created", ", ".join(wanted.subjects or ()))
        have = info.config
        diffs = _diff(have, wanted, ("subjects", "description", "num_replicas", "max_age", "max_bytes",
                                     "duplicate_window", "discard"))
        if not diffs:
            return Provisioned("stream", wanted.name, "unchanged")
        try:
            await self.js.update_stream(wanted)
        except nats.js.errors.APIError as exc:
            raise BusError(f"stream {wanted.name}: cannot update {', '.join(diffs)}: {exc.description}") \
                from None
        return Provisioned("stream", wanted.name, "updated", ", ".join(diffs))

    async def _ensure_consumer(self, stream: str, wanted: ConsumerConfig) -> Provisioned:
        assert wanted.durable_name
        label = f"{stream}/{wanted.durable_name}"
        try:
            info = await self.js.consumer_info(stream, wanted.durable_name)
        except nats.js.errors.NotFoundError:
            await self.js.add_consumer(stream, wanted)
            return Provisioned("consumer", label, "created", " ".join(wanted.filter_subjects or ()))
        have = info.config
        if not have.filter_subjects and have.filter_subject:
            have.filter_subjects = [have.filter_subject]
        diffs = _diff(have, wanted, ("filter_subjects", "ack_wait", "max_deliver", "max_ack_pending",
                                     "description"))
        if not diffs:
            return Provisioned("consumer", label, "unchanged")
        try:
            # CONSUMER.CREATE on an existing name updates the fields the server allows to change.
            await self.js.add_consumer(stream, wanted)
        except nats.js.errors.APIError as exc:
            raise BusError(f"consumer {label}: cannot update {', '.join(diffs)}: {exc.description}") \
                from None
        return Provisioned("consumer", label, "updated", ", ".join(diffs))

    # ------------------------------------------------------------------ publishing

    async def publish(self, event: Event, *, msg_id: str | None = None,
                      retry_for_secs: float | None = None) -> PubAck:
        """Publish one event and wait for its PubAck; fills ``event.id`` when empty.

        The id is the ``Nats-Msg-Id``, so a retry after a lost PubAck is dropped as
        a duplicate by the stream instead of stored twice.
        """
        if msg_id:
            event.id = msg_id
        elif not event.id:
            event.id = content_id(event)
        return await self.publish_bytes(subject_for(event), encode(event), msg_id=event.id,
                                        retry_for_secs=retry_for_secs)

    async def publish_bytes(self, subject: str, payload: bytes, *, msg_id: str,
                            headers: dict[str, str] | None = None,
                            retry_for_secs: float | None = None) -> PubAck:
        """Publish and wait for the PubAck, retrying transient failures with backoff.

        ``retry_for_secs`` None retries until the connection is closed (or the caller
        is cancelled): a NATS restart must delay the pipeline, not lose events.
        """
        all_headers = {**(headers or {}), MSG_ID: msg_id}
        deadline = None if retry_for_secs is None else time.monotonic() + retry_for_secs
        delay = 0.05
        warned = False
        while True:
            try:
                ack = await self.js.publish(subject, payload, timeout=self._publish_timeout,
                                            headers=all_headers)
                if warned:
                    log.info("publish to %s succeeded after retries", subject)
                return ack
            except _TRANSIENT as exc:
                if self.nc.is_closed or (deadline is not None and time.monotonic() >= deadline):
                    raise BusError(f"publish to {subject} failed: {type(exc).__name__}") from None
                if not warned:
                    log.warning("publish to %s: %s; retrying", subject, type(exc).__name__ or exc)
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ KV

    async def claims(self, bucket: str = CLAIMS_BUCKET) -> KvClaims:
        try:
            kv = await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await self.js.create_key_value(bucket=bucket, history=1,
                                                replicas=self.config.replicas,
                                                description="port_probe claims and last-probe stamps")
        return KvClaims(kv)


def consumer_bindings(spec: StageSpec) -> dict[str, list[str]]:
    """Stream name -> the stage's filter subjects in it (a sink may read from two streams)."""
    bindings: dict[str, list[str]] = {}
    for pattern in spec.consumes:
        bindings.setdefault(stream_for(pattern).name, []).append(pattern)
    return bindings


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-3
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(a or ()) == sorted(b or ())
    return bool(a == b or (not a and not b))


def _diff(have: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if getattr(wanted, f) is not None
            and not _same(getattr(have, f), getattr(wanted, f))]


# ---------------------------------------------------------------------- claims


def kv_key(key: str) -> str:
    """A KV-safe, injective, readable key: ``[A-Za-z0-9_-]`` kept, anything else ``=XX``.

    MACs and IPv6 addresses contain ':' and IPv4 addresses '.', which KV keys
    reserve as the token separator."""
    out: list[str] = []
    for char in key:
        if char.isascii() and (char.isalnum() or char in "_-"):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode())
    return "".join(out) or "=00"


class KvClaims:
    """lanscope.runtime.claims.Claims on a NATS KV bucket, shared by every replica.

    ``claim.<key>`` holds ``{"owner", "until"}``; it is created only if absent, and
    an expired claim is taken over with a compare-and-set on its revision, so two
    replicas never both win. ``done.<key>`` holds the last completion time.
    """

    def __init__(self, kv: KeyValue, owner: str | None = None) -> None:
        self.kv = kv
        self.owner = owner or uuid.uuid4().hex

    async def claim(self, key: str, ttl_secs: float) -> bool:
        name = f"claim.{kv_key(key)}"
        value = json.dumps({"owner": self.owner, "until": time.time() + ttl_secs}).encode()
        try:
            await self.kv.create(name, value)
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        except nats.js.errors.APIError as exc:
            if exc.err_code not in (10071, 10164):
                raise
        try:
            entry = await self.kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return await self._create_quietly(name, value)
        if entry.value and _claim_until(entry.value) > time.time():
            return False
        try:
            assert entry.revision is not None
            await self.kv.update(name, value, last=entry.revision)
            return True
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return False

    async def _create_quietly(self, name: str, value: bytes) -> bool:
        try:
            await self.kv.create(name, value)
            return True
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return False

    async def release(self, key: str) -> None:
        name = f"claim.{kv_key(key)}"
        try:
            entry = await self.kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return
        if entry.value and json.loads(entry.value).get("owner") == self.owner:
            try:
                await self.kv.delete(name, last=entry.revision)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
                pass  # someone took it over after it expired: theirs now

    async def last_done(self, key: str) -> datetime | None:
        try:
            entry = await self.kv.get(f"done.{kv_key(key)}")
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return datetime.fromisoformat(entry.value.decode())

    async def mark_done(self, key: str, when: datetime) -> None:
        await self.kv.put(f"done.{kv_key(key)}", when.isoformat().encode())


def _claim_until(value: bytes) -> float:
    try:
        return float(json.loads(value)["until"])
    except (ValueError, KeyError, TypeError):
        return 0.0   # unreadable claim: treat as expired so it cannot block a host forever
