"""Streams and durable consumers, created or updated idempotently (`lanscope provision`, `run`).

Each lanscope stream is file-backed with limits (age, bytes: discard the oldest), a
de-duplication window for ``Nats-Msg-Id``; each consuming stage gets a durable pull
consumer named after it (or one shared by the sinks of a process, topology.Feed). What
exists is compared with what is wanted and updated where the server allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError, storage_problem
from lanscope.runtime.topology import Feed, StageSpec, consumer_bindings
from schemas import STREAMS, StreamSpec


class ProvisioningError(LanscopeError):
    """A stream or consumer the server refuses to create or update; the message says which and why."""


@dataclass(frozen=True)
class Provisioned:
    kind: str       # stream | consumer
    name: str       # LANSCOPE_FACTS | LANSCOPE_FACTS/port_probe
    action: str     # created | updated | unchanged
    detail: str = ""



def stream_config(c: NatsConfig, spec: StreamSpec) -> StreamConfig:
    return StreamConfig(
        name=spec.name, subjects=list(spec.subjects), description=spec.description,
        retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, discard=DiscardPolicy.OLD,
        num_replicas=c.replicas, max_age=c.max_age_days * 86400.0, max_bytes=c.max_bytes,
        duplicate_window=c.duplicate_window_secs,
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


async def provision(js: JetStreamContext, config: NatsConfig, specs: Iterable[StageSpec],
                    streams: Iterable[StreamSpec] = STREAMS, *,
                    feeds: Iterable[Feed] = ()) -> list[Provisioned]:
    """Create or update the streams and one durable pull consumer per consuming stage.

    ``feeds``: how this process's sinks read (sink_feeds); a feed shared by several
    sinks has one consumer in place of theirs on its stream."""
    results: list[Provisioned] = []
    for stream in streams:
        results.append(await _ensure_stream(js, stream_config(config, stream)))
    shared = [feed for feed in feeds if feed.shared]
    fed = {(member, feed.stream) for feed in shared for member in feed.members}
    for spec in specs:
        for stream_name, filters in consumer_bindings(spec).items():
            if (spec.name, stream_name) not in fed:
                wanted = consumer_config(config, spec, filters)
                results.append(await _ensure_consumer(js, stream_name, wanted))
    for feed in shared:
        results.append(await _ensure_consumer(
            js, feed.stream, consumer_config(config, feed.spec, list(feed.spec.consumes))))
    return results


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> Provisioned:
    assert wanted.name
    try:
        info = await js.stream_info(wanted.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(wanted)
        except nats.js.errors.APIError as exc:
            raise ProvisioningError(f"stream {wanted.name}: cannot create it: {exc.description}"
                           + _room_hint(exc, wanted)) from None
        return Provisioned("stream", wanted.name, "created", ", ".join(wanted.subjects or ()))
    have = info.config
    diffs = _diff(have, wanted, ("subjects", "description", "num_replicas", "max_age", "max_bytes",
                                 "duplicate_window", "discard"))
    if not diffs:
        return Provisioned("stream", wanted.name, "unchanged")
    try:
        await js.update_stream(wanted)
    except nats.js.errors.APIError as exc:
        raise ProvisioningError(f"stream {wanted.name}: cannot update {', '.join(diffs)}: {exc.description}"
                       + _room_hint(exc, wanted)) from None
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
    try:
        # CONSUMER.CREATE on an existing name updates the fields the server allows to change.
        await js.add_consumer(stream, wanted)
    except nats.js.errors.APIError as exc:
        raise ProvisioningError(f"consumer {label}: cannot update {', '.join(diffs)}: {exc.description}") \
            from None
    return Provisioned("consumer", label, "updated", ", ".join(diffs))


def _room_hint(exc: Exception, wanted: StreamConfig) -> str:
    if storage_problem(exc) is None:
        return ""
    return (f" (nats.max_bytes, {wanted.max_bytes} bytes per stream, is more than the server's "
            "JetStream storage holds: lower it, or give the server more)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-3
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(a or ()) == sorted(b or ())
    return bool(a == b or (not a and not b))


def _diff(have: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    return [f for f in fields if getattr(wanted, f) is not None
            and not _same(getattr(have, f), getattr(wanted, f))]
