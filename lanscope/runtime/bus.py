"""The connection to NATS: connect, provision, publish with de-duplication, KV claims.

Every NATS call of lanscope goes through here or the runner. Secrets (password,
token, creds) are handed to nats-py and never logged: the log names the
servers and the kind of authentication only.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import ssl
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import nats.protocol.parser
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
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
from nats.protocol.parser import Parser

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError
from lanscope.net.tls import ssl_context
from lanscope.runtime.ids import content_id
from lanscope.runtime.topology import Kind, StageSpec
from schemas import STREAMS, Event, StreamSpec, encode, stream_for, subject_for

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
CLAIMS_BUCKET = "lanscope_claims"
PUBLISH_WINDOW = 512      # pipelined publishes: PubAcks outstanding per publish_many() call
_SUB_PENDING_BYTES = 256 * 1024 * 1024

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


# nats-py's receive path for one message: parse the headers (a Python loop per line),
# build the Msg, queue it, and a task hands it to the subscription's callback; ~10 us,
# a quarter of what the host_state sink spends per event. The data messages of a
# pull consumer's inbox need none of it but the Msg.
_DIRECT_SIGNATURE = ["self", "sid", "subject", "reply", "data", "headers"]
_DIRECT = list(inspect.signature(NatsClient._process_msg).parameters) == _DIRECT_SIGNATURE
# An ack is an empty publish to the message's reply subject; Msg.ack() costs ~4 us (checks,
# a flush future per call). A batch's acks go out as one write instead.
_RAW_ACKS = all(hasattr(NatsClient, name) for name in ("_send_command", "_flush_pending"))
_STATUS_AT = len(b"NATS/1.0")    # a status reply's header line: "NATS/1.0 408 Request Timeout"
# The read loop's parser is replaced (see _Parser) only where it is built as this expects.
_FAST_PARSE = _DIRECT and hasattr(nats.protocol.parser, "AWAITING_CONTROL_LINE") and all(
    hasattr(Parser(None), name) for name in ("buf", "state", "nc"))


class _Client(NatsClient):
    """nats-py's client, plus direct delivery: the data messages (no status; with a reply
    subject, unless registered otherwise) of a subscription registered with
    deliver_directly() go straight to a plain function, in the read loop, which parses
    with _Parser. Status messages and every other subscription take the usual way.
    Falls back to the usual way entirely if nats-py's internals differ."""

    def __init__(self) -> None:
        super().__init__()
        self._direct: dict[int, tuple[Callable[[Msg], None], bool]] = {}
        if _FAST_PARSE and type(getattr(self, "_ps", None)) is Parser:
            self._ps = _Parser(self)

    def deliver_directly(self, sub: Subscription, handler: Callable[[Msg], None], *,
                         replies_only: bool = True) -> None:
        """Hand ``sub``'s data messages to ``handler`` (where this nats-py allows it; else
        they keep going to the subscription's callback). ``replies_only``: only messages
        with a reply subject (a pull consumer's), not the status replies of its requests."""
        sid = getattr(sub, "_id", None)
        if _DIRECT and isinstance(sid, int):
            self._direct[sid] = (handler, replies_only)

    async def ack_all(self, msgs: Sequence[Msg]) -> None:
        """Ack every message (each its own ack, as Msg.ack() sends it), in one write."""
        if not _RAW_ACKS or not self.is_connected:
            for msg in msgs:              # buffering while reconnecting: nats-py's rules
                await msg.ack()
            return
        await self._send_command(b"".join(b"PUB %b 0\r\n\r\n" % m.reply.encode() for m in msgs if m.reply))
        flushing = getattr(self, "_flush_queue", None)
        if flushing is not None and flushing.empty():   # as nats-py's publish() kicks its flusher
            await self._flush_pending()
        for msg in msgs:
            msg._ackd = True

    def stop_delivering(self, sub: Subscription) -> None:
        self._direct.pop(getattr(sub, "_id", None), None)   # type: ignore[arg-type]

    def _deliver(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                 headers: bytes | None) -> bool:
        """Hand a data message to its direct handler; False: it takes the usual way."""
        direct = self._direct.get(sid)
        if direct is None or (direct[1] and not reply) \
                or (headers and headers[_STATUS_AT:_STATUS_AT + 1] == b" "):
            return False
        handler = direct[0]
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        handler(_Delivered(self, subject.decode(), reply.decode(), data, headers, sid))
        return True

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes,
                           headers: bytes) -> None:
        if not self._deliver(sid, subject, reply, data, headers):
            await super()._process_msg(sid, subject, reply, data, headers)


class _Delivered(Msg):
    """A message for a direct handler: a Msg built without the dataclass's keyword
    __init__, its header block parsed on first use (most handlers never look at it):
    ~0.2 us per message instead of ~1.3 for a Msg with its headers parsed."""

    def __init__(self, client: NatsClient, subject: str, reply: str, data: bytes,
                 block: bytes | None, sid: int) -> None:
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._block = block
        self._parsed: dict[str, str] | None = None
        self._metadata = None
        self._ackd = False
        self._sid = sid

    @property
    def headers(self) -> dict[str, str] | None:
        if self._block is not None:
            self._parsed, self._block = _headers(self._block), None
        return self._parsed

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._parsed, self._block = value, None


class _Parser(Parser):
    """nats-py's protocol parser with a fast path for messages (MSG, HMSG).

    nats-py tries up to two regular expressions per message and cuts the buffer
    after each (~2.5 us); this splits the control line and slices one immutable
    copy of what was read (~1.2 us), and hands a message straight to the
    client's direct delivery where that takes it. Any other line (INFO, PING,
    -ERR ...) goes to nats-py's parser on its own, so nats-py's handling of
    those is unchanged; a reset (reconnect) while a message is handled ends
    the pass."""

    def reset(self) -> None:
        super().reset()
        self._awaiting = 0             # bytes the message at the front needs in all

    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        if self.state != nats.protocol.parser.AWAITING_CONTROL_LINE:
            await super().parse()      # not left so by this class; nats-py's way
            return
        if len(buf) < self._awaiting:  # a large message still arriving: no copy per read
            return
        self._awaiting = 0
        nc = self.nc
        view = bytes(buf)
        pos = 0
        try:
            while (eol := view.find(b"\r\n", pos)) >= 0:
                if view.startswith(b"HMSG ", pos):
                    args = view[pos + 5:eol].split()
                    headed = True
                elif view.startswith(b"MSG ", pos):
                    args = view[pos + 4:eol].split()
                    headed = False
                else:
                    await self._one_line(view[pos:eol + 2])
                    if self.buf is not buf:
                        return
                    pos = eol + 2
                    continue
                # subject sid [reply] [header size] total size
                named = len(args) - headed
                try:
                    if named not in (3, 4):
                        raise ValueError
                    sid, header_size = int(args[1]), int(args[-2]) if headed else 0
                    start = eol + 2
                    end = start + int(args[-1])
                except ValueError:
                    raise nats.errors.ProtocolError("nats: malformed MSG") from None
                if end + 2 > len(view):
                    self._awaiting = end + 2 - pos   # the rest of it is still on its way
                    break
                subject, reply = args[0], args[2] if named == 4 else b""
                headers = view[start:start + header_size] if header_size else None
                payload = view[start + header_size:end]
                pos = end + 2
                if not nc._deliver(sid, subject, reply, payload, headers):
                    await nc._process_msg(sid, subject, reply, payload, headers)
                    if self.buf is not buf:
                        return
        finally:
            if pos and self.buf is buf:
                del buf[:pos]

    async def _one_line(self, line: bytes) -> None:
        """nats-py's parser on this one control line (no payload follows any of them)."""
        own, self.buf = self.buf, bytearray(line)
        alone = self.buf
        try:
            await super().parse()
        finally:                       # also when nats-py rejects the line (ProtocolError)
            if self.buf is alone:      # else a reset replaced the buffer: keep the new one
                self.buf = own


_ID_BLOCK = b"NATS/1.0\r\n" + MSG_ID.encode() + b":"


def _headers(block: bytes) -> dict[str, str]:
    """A message's header block ("NATS/1.0\r\nName: value\r\n...\r\n\r\n") as a dict."""
    if block.startswith(_ID_BLOCK) and block.count(b"\r\n") == 3 and block.endswith(b"\r\n\r\n"):
        # What every lanscope message carries, alone: a third of the general loop's cost.
        return {MSG_ID: block[len(_ID_BLOCK):-4].strip().decode("utf-8", "replace")}
    found: dict[str, str] = {}
    for line in block.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            found[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    return found


class BusError(LanscopeError):
    """NATS refused or could not be reached; the message names the server, never a secret."""


class _PubAckReply(msgspec.Struct):
    """A JetStream PubAck (or its error), decoded without building a dict first."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    domain: str | None = None
    error: dict[str, Any] | None = None


_puback_decoder = msgspec.json.Decoder(_PubAckReply)


class _Lost(Exception):
    """A pipelined publish that got no usable PubAck in time: retried the slow way."""


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
    """The NATS client context: CA file, pinned fingerprint or verify flag, client certificate."""
    if config.tls is None:
        return None
    return ssl_context(config.tls)


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

    def __init__(self, nc: _Client, config: NatsConfig, state: dict[str, Any] | None = None) -> None:
        self.nc = nc
        self._state = state if state is not None else {}
        self.config = config
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self._publish_timeout = 5.0
        # Pipelined publishes: one wildcard reply subscription, PubAcks routed by token.
        self._ack_prefix = ""
        self._ack_sub: Subscription | None = None
        self._ack_waiters: dict[str, asyncio.Future[PubAck]] = {}
        self._tokens = itertools.count()

    # ------------------------------------------------------------------ connection

    @classmethod
    async def connect(cls, config: NatsConfig, *, url: str | None = None,
                      name: str | None = None) -> Bus:
        urls = servers(config, url)
        if not urls:
            raise BusError("no NATS server: set nats.url (or let `lanscope run` start the embedded one)")
        # "down" until the first connect succeeds: failed first attempts end in one BusError.
        state: dict[str, Any] = {"down": True, "closing": False, "reconnects": 0}
        last_error: list[BaseException] = []

        async def disconnected() -> None:
            if not state["down"] and not state["closing"]:
                state["down"] = True
                log.warning("disconnected from NATS; reconnecting")

        async def reconnected() -> None:
            state["down"] = False
            state["reconnects"] += 1
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
            nc = _Client()
            await asyncio.wait_for(nc.connect(**options), budget)
        except (OSError, nats.errors.Error, ssl.SSLError, TimeoutError) as exc:
            cause = last_error[0] if isinstance(exc, TimeoutError) and last_error else exc
            raise BusError(f"cannot connect to NATS at {', '.join(urls)} ({_auth_kind(config)}): "
                           f"{type(cause).__name__}: {cause}") from None
        nc.options["max_reconnect_attempts"] = -1
        state["down"] = False
        log.debug("connected to NATS at %s (%s)", nc.connected_url.netloc if nc.connected_url else urls[0],
                 _auth_kind(config))
        return cls(nc, config, state)

    @property
    def reconnects(self) -> int:
        """How many times the connection was re-established (server-side pull requests die with it)."""
        return int(self._state.get("reconnects", 0))

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
            # At least three batches: a sink's next batch is delivered while one is written
            # and the one before publishes its outputs.
            max_ack_pending=max(c.max_ack_pending, 3 * spec.batch_size),
            filter_subjects=filters,
        )

    async def provision(self, specs: Iterable[StageSpec], streams: Iterable[StreamSpec] = STREAMS,
                        *, feeds: Iterable[Feed] = ()) -> list[Provisioned]:
        """Create or update the streams and one durable pull consumer per consuming stage.

        ``feeds``: how this process's sinks read (sink_feeds); a feed shared by several
        sinks has one consumer in place of theirs on its stream."""
        results: list[Provisioned] = []
        for stream in streams:
            results.append(await self._ensure_stream(self.stream_config(stream)))
        shared = [feed for feed in feeds if feed.shared]
        fed = {(member, feed.stream) for feed in shared for member in feed.members}
        for spec in specs:
            for stream_name, filters in consumer_bindings(spec).items():
                if (spec.name, stream_name) not in fed:
                    results.append(await self._ensure_consumer(stream_name,
                                                               self.consumer_config(spec, filters)))
        for feed in shared:
            results.append(await self._ensure_consumer(
                feed.stream, self.consumer_config(feed.spec, list(feed.spec.consumes))))
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

    async def publish_events(self, events: Sequence[Event]) -> list[PubAck]:
        """Publish events in order, pipelined (see publish_many); fills empty ids like publish()."""
        for event in events:
            if not event.id:
                event.id = content_id(event)
        return await self.publish_many([(subject_for(e), encode(e), e.id) for e in events])

    async def publish_many(self, messages: Sequence[tuple[str, bytes, str]], *,
                           window: int = PUBLISH_WINDOW) -> list[PubAck]:
        """Publish ``(subject, payload, msg_id)`` in order; return every PubAck, in order.

        The same guarantee as publish_bytes() for each message, at a fraction of the
        cost: up to ``window`` publishes are on the wire before the first PubAck is
        awaited (one round trip per window instead of one per message). The server
        stores what one connection sends in the order it was sent. A message whose
        PubAck does not come within the publish timeout (NATS restarting, no stream
        yet) is published again with publish_bytes() and its ``Nats-Msg-Id``, so a
        copy the server did store is dropped as a duplicate; only then may a retried
        message land after one sent later (sinks order by ``observed_at``, never by
        arrival). A non-transient refusal (an API error) is raised.
        """
        if not messages:
            return []
        if len(messages) == 1:
            subject, payload, msg_id = messages[0]
            return [await self.publish_bytes(subject, payload, msg_id=msg_id)]
        await self._ensure_ack_inbox()
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(max(window, 1))
        waiters: list[asyncio.Future[PubAck] | None] = []
        tokens: list[str] = []

        def settled(_: asyncio.Future[PubAck]) -> None:
            slots.release()

        try:
            for subject, payload, msg_id in messages:
                if slots.locked():
                    try:
                        await asyncio.wait_for(slots.acquire(), self._publish_timeout)
                    except TimeoutError:
                        waiters.append(None)         # the window is stuck: the slow path sends it
                        continue
                else:
                    await slots.acquire()
                token = str(next(self._tokens))
                waiter: asyncio.Future[PubAck] = loop.create_future()
                waiter.add_done_callback(settled)
                self._ack_waiters[token] = waiter
                tokens.append(token)
                try:
                    await self.nc.publish(subject, payload, reply=self._ack_prefix + token,
                                          headers={MSG_ID: msg_id})
                except (nats.errors.Error, OSError) as exc:   # not even buffered: slow path
                    waiter.set_exception(_Lost(type(exc).__name__))
                waiters.append(waiter)
            outstanding = [w for w in waiters if w is not None and not w.done()]
            if outstanding:
                await asyncio.wait(outstanding, timeout=self._publish_timeout)
            acks: list[PubAck] = []
            for (subject, payload, msg_id), sent in zip(messages, waiters, strict=True):
                outcome = _outcome(sent)
                if isinstance(outcome, PubAck):
                    acks.append(outcome)
                    continue
                if outcome is not None and not isinstance(outcome, (_Lost, *_TRANSIENT)):
                    raise outcome
                acks.append(await self.publish_bytes(subject, payload, msg_id=msg_id))
            return acks
        finally:
            for token in tokens:
                self._ack_waiters.pop(token, None)
            for sent in waiters:
                if sent is not None and not sent.done():
                    sent.cancel()
                else:
                    _outcome(sent)   # retrieved: no "never retrieved" noise after a raise

    async def _ensure_ack_inbox(self) -> None:
        if self._ack_sub is None:
            self._ack_prefix = self.nc.new_inbox() + "."
            self._ack_sub = await self.nc.subscribe(self._ack_prefix + "*", cb=self._on_puback,
                                                    pending_bytes_limit=_SUB_PENDING_BYTES)
            # A PubAck settles its waiter right in the read loop; statuses (503) take the callback.
            self.nc.deliver_directly(self._ack_sub, self._take_puback, replies_only=False)

    async def _on_puback(self, msg: Msg) -> None:
        self._take_puback(msg)

    def _take_puback(self, msg: Msg) -> None:
        waiter = self._ack_waiters.pop(msg.subject[len(self._ack_prefix):], None)
        if waiter is None or waiter.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":    # no stream (yet) for the subject
            waiter.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            reply = _puback_decoder.decode(msg.data)
        except msgspec.DecodeError:
            waiter.set_exception(_Lost("unreadable PubAck"))
            return
        if reply.error is not None:
            try:
                nats.js.errors.APIError.from_error(reply.error)   # raises the specific subclass
            except nats.js.errors.APIError as exc:
                waiter.set_exception(exc)
            return
        waiter.set_result(PubAck(stream=reply.stream, seq=reply.seq, domain=reply.domain,
                                 duplicate=reply.duplicate or None))

    # ------------------------------------------------------------------ KV

    async def claims(self, bucket: str = CLAIMS_BUCKET) -> KvClaims:
        try:
            kv = await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await self.js.create_key_value(bucket=bucket, history=1,
                                                replicas=self.config.replicas,
                                                description="port_probe claims and last-probe stamps")
        return KvClaims(kv)


def _outcome(sent: asyncio.Future[PubAck] | None) -> PubAck | BaseException | None:
    """A pipelined publish's PubAck, its error, or None (never sent, unsettled, cancelled)."""
    if sent is None or not sent.done() or sent.cancelled():
        return None
    return sent.exception() or sent.result()


class Puller:
    """A durable pull consumer kept fed, so a batch arrives while the previous one is written.

    nats-py's ``fetch()`` costs an asyncio timeout per message and leaves no
    request outstanding between calls; this keeps pull requests for up to
    ``prefetch`` messages open on the server (each expiring after
    ``expires_secs``), and the subscription's callback only appends to a buffer.
    The server's status replies say how much of a request went unfilled (408 on
    expiry), which keeps the count of requested messages exact; a reconnect (the
    server forgets a connection's requests) or a silent request resets it.

    Nothing here acks: the caller settles every message it takes. ``close()``
    stops requesting, waits for the open requests to end, and returns what
    arrived but was never taken, for the caller to hand back (nak).
    """

    def __init__(self, bus: Bus, stream: str, durable: str, *, prefetch: int,
                 expires_secs: float) -> None:
        self.bus = bus
        self.stream = stream
        self.durable = durable
        self.prefetch = max(prefetch, 1)
        self.expires_secs = max(expires_secs, 0.05)
        self._next_subject = f"{bus.js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = ""
        self._sub: Subscription | None = None
        self._buffer: deque[Msg] = deque()
        self._arrivals: deque[float] = deque()  # when each buffered message came (monotonic)
        self._wanted = 1                      # wake the taker once this many are buffered
        self._arrived = asyncio.Event()
        self._requested = 0                   # asked for, not yet delivered or expired
        self._active_at = 0.0                 # last request or reply
        self._reconnects = bus.reconnects
        self._closing = False

    async def start(self) -> None:
        self._inbox = self.bus.nc.new_inbox()
        self._sub = await self.bus.nc.subscribe(self._inbox, cb=self._on_msg,
                                                pending_bytes_limit=_SUB_PENDING_BYTES)
        self.bus.nc.deliver_directly(self._sub, self._take)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def _take(self, msg: Msg) -> None:
        """A message of the stream (directly from the read loop, or via _on_msg)."""
        self._active_at = time.monotonic()
        self._requested = max(self._requested - 1, 0)
        self._buffer.append(msg)
        self._arrivals.append(self._active_at)
        if len(self._buffer) >= self._wanted:
            self._arrived.set()

    async def _on_msg(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None and msg.reply:
            self._take(msg)
            return
        self._active_at = time.monotonic()
        if status == "100":                    # idle heartbeat
            return
        # 408 request expired, 409 request ended (leadership change, limits, consumer
        # deleted), 404 no messages: the header says how much went unfilled.
        unfilled = (msg.headers or {}).get("Nats-Pending-Messages")
        if unfilled is not None and unfilled.isdigit():
            self._requested = max(self._requested - int(unfilled), 0)
        else:
            self._requested = 0
        if status not in ("404", "408"):
            log.debug("pull %s/%s ended: %s %s", self.stream, self.durable, status,
                      (msg.headers or {}).get("Description", ""))
        self._arrived.set()                    # the taker may want to ask again

    async def _refill(self) -> None:
        if self._closing or self._sub is None:
            return
        now = time.monotonic()
        if self.bus.reconnects != self._reconnects:
            self._reconnects, self._requested = self.bus.reconnects, 0
        elif self._requested and now - self._active_at > self.expires_secs + 2.0:
            self._requested = 0                # expired without a word (lost on the way)
        want = self.prefetch - len(self._buffer) - self._requested
        # Ask again when half the window is free, not for every message taken.
        if want <= 0 or (self._requested and want < self.prefetch // 2):
            return
        request = {"batch": want, "expires": int(self.expires_secs * 1e9)}
        try:
            await self.bus.nc.publish(self._next_subject, json.dumps(request).encode(),
                                      reply=self._inbox)
        except (nats.errors.Error, OSError) as exc:
            log.debug("pull request for %s/%s failed: %s", self.stream, self.durable,
                      type(exc).__name__)
            return
        self._requested += want
        self._active_at = now

    async def fetch(self, limit: int, timeout: float, *, fill_secs: float = 0.0) -> list[Msg]:
        """Up to ``limit`` messages: waits ``timeout`` for the first, then for the batch to
        fill until the oldest has waited ``fill_secs`` since it arrived (a message that
        waited while the previous batch was written is not held back again); [] when
        nothing came."""
        deadline = time.monotonic() + max(timeout, 0.0)
        await self._wait(1, deadline)
        if not self._buffer:
            return []
        if fill_secs > 0 and len(self._buffer) < limit:
            await self._wait(limit, self._arrivals[0] + fill_secs)
        count = min(limit, len(self._buffer))
        taken = [self._buffer.popleft() for _ in range(count)]
        for _ in range(count):
            self._arrivals.popleft()
        await self._refill()
        return taken

    async def _wait(self, count: int, deadline: float) -> None:
        while len(self._buffer) < count:
            await self._refill()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Wake on `count` buffered or on a status reply (time to ask again).
            self._wanted = min(count, self.prefetch)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(remaining, self.expires_secs))
            except TimeoutError:
                pass
            finally:
                self._wanted = 1
            if count > self.prefetch and len(self._buffer) >= self.prefetch:
                return

    async def close(self) -> list[Msg]:
        """Stop asking; wait for the open requests to end; unsubscribe; return untaken messages."""
        self._closing = True
        if self._sub is None:
            return list(self._buffer)
        deadline = time.monotonic() + self.expires_secs + 1.0
        while self._requested and time.monotonic() < deadline and not self.bus.nc.is_closed \
                and self.bus.reconnects == self._reconnects:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(deadline - time.monotonic(), 0.01))
        # Let the subscription's callback pass on anything already read from the socket.
        while self._sub.pending_msgs and time.monotonic() < deadline:
            await asyncio.sleep(0)
        sub, self._sub = self._sub, None
        self.bus.nc.stop_delivering(sub)
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        left, self._buffer, self._arrivals = list(self._buffer), deque(), deque()
        return left


def consumer_bindings(spec: StageSpec) -> dict[str, list[str]]:
    """Stream name -> the stage's filter subjects in it (a sink may read from two streams)."""
    bindings: dict[str, list[str]] = {}
    for pattern in spec.consumes:
        bindings.setdefault(stream_for(pattern).name, []).append(pattern)
    return bindings


@dataclass(frozen=True)
class Feed:
    """One durable consumer on one stream that feeds sinks of one process.

    Sinks of one process that read the same stream share one: each message is
    delivered, received and decoded once, however many of them want it. Its name
    joins theirs (``findings+host_state``); a sink alone on a stream reads through
    its own durable, named after the stage."""

    stream: str
    spec: StageSpec                 # the consumer: the sink's own spec, or one made for the group
    members: tuple[str, ...]        # the sinks it feeds, by name

    @property
    def shared(self) -> bool:
        return len(self.members) > 1


def sink_feeds(specs: Iterable[StageSpec]) -> list[Feed]:
    """How the sinks among ``specs``, run in one process, read their streams."""
    readers: dict[str, list[StageSpec]] = {}
    for spec in specs:
        if spec.kind is Kind.SINK:
            for stream in consumer_bindings(spec):
                readers.setdefault(stream, []).append(spec)
    feeds: list[Feed] = []
    for stream, sinks in readers.items():
        if len(sinks) == 1:
            feeds.append(Feed(stream, sinks[0], (sinks[0].name,)))
            continue
        sinks = sorted(sinks, key=lambda s: s.name)
        filters = list(dict.fromkeys(f for s in sinks for f in consumer_bindings(s)[stream]))
        waits = [s.ack_wait_secs for s in sinks if s.ack_wait_secs is not None]
        names = tuple(s.name for s in sinks)
        spec = StageSpec("+".join(names), Kind.SINK, consumes=tuple(filters),
                         description=f"one delivery for the sinks {', '.join(names)} in one process",
                         max_replicas=1, batch_size=max(s.batch_size for s in sinks),
                         ack_wait_secs=max(waits) if waits else None)
        feeds.append(Feed(stream, spec, names))
    return feeds


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
