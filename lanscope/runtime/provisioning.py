"""Streams and durable consumers, created or updated idempotently (`lanscope provision`, `run`).

Each lanscope stream is file-backed with limits (age, bytes: discard the oldest), a
de-duplication window for ``Nats-Msg-Id``; each consuming stage gets a durable pull
consumer named after it (or one shared by the sinks of a process, topology.Feed). What
exists is compared with what is wanted and updated where the server allows.

The process's layout (lanscope.runtime.layout) says which streams it keeps (a
sensor's are named after its site), what they copy from other JetStream domains
(a hub's copies of its sensors' streams), and which stages it runs. A JetStream
that cannot answer yet (a cluster electing a leader) is waited out for
PATIENCE_SECS. Both commands provision as the admin role (``connect_admin``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from lanscope.config import Config, NatsConfig
from lanscope.errors import LanscopeError, storage_problem
from lanscope.runtime.auth import ADMIN, client_config
from lanscope.runtime.embedded import embedded_stream_bytes
from lanscope.runtime.layout import STANDALONE, Layout
from lanscope.runtime.topology import Feed, StageSpec, consumer_bindings
from schemas import StreamSpec

if TYPE_CHECKING:
    from lanscope.runtime.bus import Bus

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long provisioning waits out a JetStream that cannot answer yet: a cluster electing a
# leader (a node just died, or the cluster just started) answers with timeouts and 503s.
PATIENCE_SECS = 60.0
# Errors after which the same request is safe and useful to retry: provisioning's, and the
# bus's publishes (the same Nats-Msg-Id).
TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


class ProvisioningError(LanscopeError):
    """A stream or consumer the server refuses to create or update, or a JetStream that did not
    answer for PATIENCE_SECS; the message says which and why."""


@dataclass(frozen=True)
class Provisioned:
    kind: str       # stream | consumer
    name: str       # LANSCOPE_FACTS | LANSCOPE_FACTS/port_probe
    action: str     # created | updated | unchanged
    detail: str = ""


def provisioning_config(config: Config) -> NatsConfig:
    """The admin role's settings; with the embedded server, streams fitted to its store.
    CredentialsError without the admin's credentials."""
    nats_config = client_config(config.nats, config.data_dir, ADMIN)
    if not config.nats.url:
        nats_config = msgspec.structs.replace(nats_config, max_bytes=embedded_stream_bytes(
            config.nats, config.data_dir, len(config.layout().streams)))
    return nats_config


async def connect_admin(config: Config, url: str, *, claims: bool = False) -> Bus:
    """A connection as the admin role (provisioning_config), on the config's layout, to
    provision with (``Bus.provision``); ``claims``: port_probe's bucket created first (its
    role may use it, not create it). CredentialsError without the admin's credentials."""
    from lanscope.runtime.bus import Bus

    admin = await Bus.connect(provisioning_config(config), url=url, name=f"{config.nats.name}-provision",
                              role=ADMIN)
    try:
        admin.layout = config.layout()
        if claims:
            await admin.claims()
    except BaseException:
        await admin.close()
        raise
    return admin


def stream_config(c: NatsConfig, spec: StreamSpec, layout: Layout = STANDALONE) -> StreamConfig:
    return StreamConfig(
        name=spec.name, subjects=list(spec.subjects), description=spec.description,
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
        num_replicas=c.replicas, max_age=c.max_age_days * 86400.0, max_bytes=c.max_bytes,
        duplicate_window=c.duplicate_window_secs, sources=layout.sources(spec) or None,
    )


def consumer_config(c: NatsConfig, spec: StageSpec, filters: list[str]) -> ConsumerConfig:
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


async def provision(js: JetStreamContext, config: NatsConfig, specs: Iterable[StageSpec], *,
                    layout: Layout = STANDALONE, feeds: Iterable[Feed] = ()) -> list[Provisioned]:
    """Create or update the layout's streams and one durable pull consumer
    per consuming stage that the layout runs.

    ``feeds``: how this process's sinks read (sink_feeds); a feed shared by several
    sinks has one consumer in place of theirs on its stream."""
    results: list[Provisioned] = []
    for stream in layout.streams:
        results.append(await settled(_ensure_stream, js, stream_config(config, stream, layout)))
    shared = [feed for feed in feeds if feed.shared]
    fed = {(member, feed.stream) for feed in shared for member in feed.members}
    for spec in (layout.spec(s) for s in specs if layout.runs(s)):
        for stream_name, filters in consumer_bindings(spec, layout.streams).items():
            if (spec.name, stream_name) not in fed:
                wanted = consumer_config(config, spec, filters)
                results.append(await settled(_ensure_consumer, js, stream_name, wanted))
    for feed in shared:
        wanted = consumer_config(config, feed.spec, list(feed.spec.consumes))
        results.append(await settled(_ensure_consumer, js, feed.stream, wanted))
    return results


async def settled(step: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await step(*args)``, again while JetStream cannot answer yet, for PATIENCE_SECS."""
    deadline = time.monotonic() + PATIENCE_SECS
    delay = 0.25
    while True:
        try:
            return await step(*args)
        except TRANSIENT as exc:
            if time.monotonic() >= deadline:
                raise ProvisioningError(f"provisioning: JetStream did not answer for {PATIENCE_SECS:g}s "
                                        f"({type(exc).__name__})") from None
            log.warning("provisioning: %s; retrying", type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> Provisioned:
    assert wanted.name
    try:
        info = await js.stream_info(wanted.name)
    except nats.js.errors.NotFoundError:
        await _apply(js.add_stream(wanted), f"stream {wanted.name}: cannot create it", wanted)
        return Provisioned("stream", wanted.name, "created", ", ".join(wanted.subjects or ()))
    have = info.config
    diffs = _diff(have, wanted, ("subjects", "description", "num_replicas", "max_age", "max_bytes",
                                 "duplicate_window", "discard"))
    if _sources_of(have) != _sources_of(wanted):
        diffs.append("sources")
    if not diffs:
        return Provisioned("stream", wanted.name, "unchanged")
    await _apply(js.update_stream(wanted), f"stream {wanted.name}: cannot update {', '.join(diffs)}", wanted)
    return Provisioned("stream", wanted.name, "updated", ", ".join(diffs))


async def _ensure_consumer(js: JetStreamContext, stream: str, wanted: ConsumerConfig) -> Provisioned:
    assert wanted.durable_name
    label = f"{stream}/{wanted.durable_name}"
    try:
        info = await js.consumer_info(stream, wanted.durable_name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(stream, wanted)
        return Provisioned("consumer", label, "created", " ".join(wanted.filter_subjects or ()))
    have = info.config
    if not have.filter_subjects and have.filter_subject:
        have.filter_subjects = [have.filter_subject]
    diffs = _diff(have, wanted, ("filter_subjects", "ack_wait", "max_deliver", "max_ack_pending",
                                 "description"))
    if not diffs:
        return Provisioned("consumer", label, "unchanged")
    # CONSUMER.CREATE on an existing name updates the fields the server allows to change.
    await _apply(js.add_consumer(stream, wanted), f"consumer {label}: cannot update {', '.join(diffs)}")
    return Provisioned("consumer", label, "updated", ", ".join(diffs))


async def _apply(call: Awaitable[Any], what: str, stream: StreamConfig | None = None) -> None:
    """Await a JetStream API call; a refusal becomes a ProvisioningError naming ``what`` (a
    server without JetStream stays ServiceUnavailableError: the caller retries that)."""
    try:
        await call
    except nats.js.errors.ServiceUnavailableError:
        raise
    except nats.js.errors.APIError as exc:
        raise ProvisioningError(f"{what}: {exc.description}" + _room_hint(exc, stream)) from None


def _room_hint(exc: Exception, wanted: StreamConfig | None) -> str:
    if wanted is None or storage_problem(exc) is None:
        return ""
    return (f" (nats.max_bytes, {wanted.max_bytes} bytes per stream, is more than the server's "
            "JetStream storage holds: lower it, or give the server more)")


def _sources_of(config: StreamConfig) -> list[tuple[str, str | None, str | None, str | None]]:
    """A stream's sources, comparable: (name, filter, API prefix, deliver prefix)."""
    return sorted((s.name, s.filter_subject, s.external.api if s.external else None,
                   s.external.deliver if s.external else None) for s in config.sources or ())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-3
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(a or ()) == sorted(b or ())
    return bool(a == b or (not a and not b))


def _diff(have: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    """The ``fields`` whose wanted value (when set) differs from the one the server has."""
    return [f for f in fields if getattr(wanted, f) is not None
            and not _same(getattr(have, f), getattr(wanted, f))]
