"""The connection to NATS: connect, provision streams and consumers, publish with de-duplication.

Every NATS call of lanscope goes through here (provisioning's in
lanscope.runtime.provisioning), the puller or the runner (the
client itself, with its fast receive path, is lanscope.runtime.fastpath). Secrets (password,
token, creds) are handed to nats-py and never logged: the log names the
servers and the kind of authentication only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    DEFAULT_PREFIX,
    PubAck,
)

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError, storage_problem
from lanscope.net.tls import ssl_context
from lanscope.runtime import fastpath, provisioning
from lanscope.runtime.claims import CLAIMS_BUCKET, KvClaims
from lanscope.runtime.fastpath import MSG_ID, FastClient
from lanscope.runtime.ids import content_id
from lanscope.runtime.layout import STANDALONE, Layout
from lanscope.runtime.provisioning import Provisioned
from lanscope.runtime.puller import SUB_PENDING_BYTES
from lanscope.runtime.topology import Feed, StageSpec
from schemas import Event, encode, subject_for

log = logging.getLogger(__name__)

PUBLISH_WINDOW = 512      # pipelined publishes: PubAcks outstanding per publish_many() call

# Errors after which the same publish (same Nats-Msg-Id) is safe and useful to retry.
_TRANSIENT = provisioning.TRANSIENT


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


def servers(config: NatsConfig, url: str | None = None) -> list[str]:
    raw = url if url is not None else config.url
    return [part.strip() for part in raw.split(",") if part.strip()]


def tls_context(config: NatsConfig) -> ssl.SSLContext | None:
    """The NATS client context: CA file, pinned fingerprint or verify flag, client certificate."""
    if config.tls is None:
        return None
    return ssl_context(config.tls)


def _auth_kind(config: NatsConfig, role: str | None = None) -> str:
    as_role = f" of role {role}" if role else ""
    if config.nkey_seed_file:
        return f"nkey{as_role}"
    if config.creds_file:
        return f"creds file{as_role}"
    if config.token:
        return "token"
    if config.user:
        return f"user {config.user}"
    return "no auth"


class Bus:
    """A connected NATS client with JetStream, for one process."""

    def __init__(self, nc: FastClient, config: NatsConfig, state: dict[str, Any] | None = None) -> None:
        self.nc = nc
        self._state = state if state is not None else {}
        self.config = config
        self.layout: Layout = STANDALONE          # the process's site and streams (set by its command)
        self.api_prefix = DEFAULT_PREFIX          # JetStream's API subjects (no domain)
        self.js: JetStreamContext = nc.jetstream(prefix=self.api_prefix, timeout=10.0)
        self._publish_timeout = 5.0
        # Pipelined publishes: one wildcard reply subscription, PubAcks routed by token.
        self._ack_prefix = ""
        self._ack_sub: Subscription | None = None
        self._ack_waiters: dict[str, asyncio.Future[PubAck]] = {}
        self._tokens = itertools.count()

    # ------------------------------------------------------------------ connection

    @classmethod
    async def connect(cls, config: NatsConfig, *, url: str | None = None,
                      name: str | None = None, fast: bool = True, role: str | None = None) -> Bus:
        """Connect (``fast``: with lanscope.runtime.fastpath where this nats-py allows it).

        ``role`` (lanscope.runtime.auth): replies arrive under that role's inbox prefix, the
        only one its permissions let it read; pass its credentials in ``config``
        (auth.client_config)."""
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

        refused: set[str] = set()

        async def error(exc: Exception) -> None:
            text = str(exc)
            if not (last_error and _refused(last_error[0])):   # a refusal is the reason to keep
                last_error[:] = [exc]
            if "permissions violation" in text.lower():
                # The server refused one subject: say which (once each), and as whom.
                if text not in refused:
                    refused.add(text)
                    log.warning("NATS refused it (%s): %s", _auth_kind(config, role),
                                text.removeprefix("nats: "))
                return
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
        if config.nkey_seed_file:
            options["nkeys_seed"] = config.nkey_seed_file
        if role:
            from lanscope.runtime.auth import inbox_prefix

            options["inbox_prefix"] = inbox_prefix(role)
        # nats-py retries some first-connect failures (TLS) without end: bound it here.
        budget = max(config.connect_timeout_secs * 3 * len(urls), 5.0)
        try:
            nc = FastClient(fast=fast)
            await asyncio.wait_for(nc.connect(**options), budget)
        except (OSError, nats.errors.Error, ssl.SSLError, TimeoutError) as exc:
            # The real reason came first (a later attempt may just see the socket closed).
            hidden = (TimeoutError, nats.errors.NoServersError)
            cause = last_error[0] if last_error and (isinstance(exc, hidden) or _refused(last_error[0])) \
                else exc
            hint = ""
            if _refused(cause):
                hint = (" (the server wants credentials this process lacks or it refuses; see "
                        "README, Security)")
            raise BusError(f"cannot connect to NATS at {', '.join(urls)} ({_auth_kind(config, role)}): "
                           f"{type(cause).__name__}: {cause}{hint}") from None
        nc.options["max_reconnect_attempts"] = -1
        if fast:
            fastpath.warn_if_unfit()
        state["down"] = False
        log.debug("connected to NATS at %s (%s)", nc.connected_url.netloc if nc.connected_url else urls[0],
                  _auth_kind(config, role))
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

    async def provision(self, specs: Iterable[StageSpec], *, feeds: Iterable[Feed] = ()) -> list[Provisioned]:
        """Create or update the layout's streams and one durable pull consumer per consuming
        stage that the layout runs (lanscope.runtime.provisioning)."""
        return await provisioning.provision(self.js, self.config, specs, layout=self.layout, feeds=feeds)

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
            except (*_TRANSIENT, nats.js.errors.APIError) as exc:
                # A stream out of storage refuses now and stores once space is back: retried
                # like a lost PubAck (storage_problem), never dropped.
                full = isinstance(exc, nats.js.errors.APIError) and storage_problem(exc) is not None
                if isinstance(exc, nats.js.errors.APIError) and not full:
                    raise
                if self.nc.is_closed or (deadline is not None and time.monotonic() >= deadline):
                    raise BusError(f"publish to {subject} failed: {type(exc).__name__}") from None
                if not warned:
                    log.warning("publish to %s: %s; retrying", subject,
                                storage_problem(exc) if full else (type(exc).__name__ or exc))
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
                if outcome is not None and not isinstance(outcome, (_Lost, *_TRANSIENT)) \
                        and storage_problem(outcome) is None:
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
                                                    pending_bytes_limit=SUB_PENDING_BYTES)
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
        """The port_probe claims in their KV bucket (created on first use)."""
        try:
            kv = await self.js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await self.js.create_key_value(bucket=bucket, history=1,
                                                replicas=self.config.replicas,
                                                description="port_probe claims and last-probe stamps")
        return KvClaims(kv)


def _refused(exc: BaseException) -> bool:
    return "authorization violation" in str(exc).lower()


def _outcome(sent: asyncio.Future[PubAck] | None) -> PubAck | BaseException | None:
    """A pipelined publish's PubAck, its error, or None (never sent, unsettled, cancelled)."""
    if sent is None or not sent.done() or sent.cancelled():
        return None
    return sent.exception() or sent.result()
