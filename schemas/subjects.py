"""Event type -> subject, and the streams that hold them. Nothing else.

Subjects follow ``lanscope.<entity>.<fact>[.<qualifier>]``. Publishers use
full subjects; wildcards are for consumers only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from msgspec import Struct

from .events import (
    Event,
    Finding,
    HostAnnotated,
    HostChanged,
    HostCheckRequested,
    HostSeen,
    HostUnreachable,
    PortsProbed,
    ProbeRequested,
    RegistryEntry,
    SweepCompleted,
)

PREFIX = "lanscope"

HOST_SEEN = "lanscope.host.seen.>"            # .<source>
HOST_ANNOTATED = "lanscope.host.annotated.>"  # .<source>
HOST_PORTS = "lanscope.host.ports"
SWEEP_COMPLETED = "lanscope.sweep.completed.>"  # .<source>
HOST_CHANGED = "lanscope.host.changed.>"      # .new .changed .gone .back
HOST_CHECK = "lanscope.host.check"            # host_state asks presence_check to try a host
HOST_UNREACHABLE = "lanscope.host.unreachable"  # ... which did not answer
FINDING = "lanscope.finding.>"                # .opened .resolved
REGISTRY = "lanscope.registry.>"              # .created .updated
DLQ = "lanscope.dlq.>"                        # .<stage>
PROBE_REQUESTED = "lanscope.host.probe.requested"  # "probe now" (the dashboard) -> port_probe
QUERY = "lanscope.query"                      # request/reply to the DuckDB owner (core NATS)


class StreamSpec(Struct, frozen=True):
    name: str
    subjects: tuple[str, ...]
    description: str


FACTS = StreamSpec(
    name="LANSCOPE_FACTS",
    subjects=(HOST_SEEN, HOST_ANNOTATED, HOST_PORTS, SWEEP_COMPLETED, HOST_UNREACHABLE),
    description="Sightings, enrichments and probe results (replayable: rebuilds DuckDB)",
)
CHANGES = StreamSpec(
    name="LANSCOPE_CHANGES",
    subjects=(HOST_CHANGED, HOST_CHECK, FINDING, REGISTRY),
    description="Conclusions: host changes, presence checks asked for, findings, registry entries",
)
DEAD_LETTERS = StreamSpec(
    name="LANSCOPE_DLQ",
    subjects=(DLQ,),
    description="Messages a stage could not handle, with the reason in headers",
)
REQUESTS = StreamSpec(
    name="LANSCOPE_REQUESTS",
    subjects=(PROBE_REQUESTED,),
    description="What people ask of the pipeline (probe a host now); port_probe drops stale ones",
)
STREAMS: tuple[StreamSpec, ...] = (FACTS, CHANGES, DEAD_LETTERS, REQUESTS)

_TOKEN = re.compile(r"[^a-z0-9_-]+")


def _token(value: str) -> str:
    """A subject token from free text (sources, kinds): lower-case, no dots or wildcards."""
    return _TOKEN.sub("_", value.lower()) or "unknown"


# Event type -> (the subject pattern it is published under, the token that completes it).
# The one table of what goes where: subject_for() publishes by it, the graph test reads it.
SUBJECTS: dict[type[Event], tuple[str, Callable[[Any], str] | None]] = {
    HostSeen: (HOST_SEEN, lambda e: _token(e.source)),
    HostAnnotated: (HOST_ANNOTATED, lambda e: _token(e.source)),
    PortsProbed: (HOST_PORTS, None),
    SweepCompleted: (SWEEP_COMPLETED, lambda e: _token(e.source)),
    HostChanged: (HOST_CHANGED, lambda e: e.kind.value),
    Finding: (FINDING, lambda e: e.state.value),
    RegistryEntry: (REGISTRY, lambda e: _token(e.action)),
    ProbeRequested: (PROBE_REQUESTED, None),
    HostCheckRequested: (HOST_CHECK, None),
    HostUnreachable: (HOST_UNREACHABLE, None),
}


# subject_for's view of it: the subject up to the last token, made once.
_PREFIXES = {t: (pattern if last is None else pattern[:-1], last) for t, (pattern, last) in SUBJECTS.items()}


def subject_for(event: Event) -> str:
    """The full subject an event is published on."""
    route = _PREFIXES.get(type(event))
    if route is None:
        raise TypeError(f"no subject for event type {type(event).__name__}")
    prefix, last_token = route
    return prefix if last_token is None else prefix + last_token(event)


def dlq_subject(stage: str) -> str:
    return f"{PREFIX}.dlq.{_token(stage)}"


def stream_for(subject: str) -> StreamSpec:
    """The stream that captures a concrete subject."""
    for stream in STREAMS:
        if any(matches(pattern, subject) for pattern in stream.subjects):
            return stream
    raise LookupError(f"no stream captures subject {subject!r}")


def matches(pattern: str, subject: str) -> bool:
    """NATS wildcard match (``*`` one token, ``>`` the rest)."""
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)
