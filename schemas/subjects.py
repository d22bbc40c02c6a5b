"""Event type -> subject, and the streams that hold them. Nothing else.

Subjects follow ``lanscope.<entity>.<fact>[.<qualifier>]``. Publishers use
full subjects; wildcards are for consumers only.

Sites: an event of a named site (``Event.site``) travels under
``lanscope.<site>.<entity>.<fact>[.<qualifier>]`` (``lanscope.paris.host.seen.arp``);
the default site's events keep the subjects above, so subscribers of a
single-site install see no change. The patterns below are the default site's;
``any_site(pattern)`` is the same pattern for every named site
(``lanscope.*.host.seen.>``) and ``everywhere(pattern)`` both. A site can never
be named like an entity (types.check_site), so the two forms never overlap.

The streams: a standalone install and a hub keep STREAMS, which capture both
forms. A sensor keeps its own site's events in ``sensor_streams(site)``, named
after the site (the hub copies them from there, and tells from a copied
message's stream which site it came from: ``site_of_stream``).
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
from .types import ENTITIES

PREFIX = "lanscope"

HOST_SEEN = "lanscope.host.seen.>"            # .<source>
HOST_ANNOTATED = "lanscope.host.annotated.>"  # .<source>
HOST_PORTS = "lanscope.host.ports"
SWEEP_COMPLETED = "lanscope.sweep.completed.>"  # .<source>
HOST_CHANGED = "lanscope.host.changed.>"      # .new .changed .gone .back
HOST_CHECK = "lanscope.host.check"            # host_state asks presence_check to try a host
HOST_UNREACHABLE = "lanscope.host.unreachable"  # ... which did not answer
# One token after these: with ">" they would overlap the named sites' forms
# (lanscope.finding.> holds lanscope.finding.host.changed.new), which a stream refuses.
FINDING = "lanscope.finding.*"                # .opened .resolved
REGISTRY = "lanscope.registry.*"              # .created .updated
DLQ = "lanscope.dlq.*"                        # .<stage>
PROBE_REQUESTED = "lanscope.host.probe.requested"  # "probe now" (the dashboard) -> port_probe
QUERY = "lanscope.query"                      # request/reply to the DuckDB owner (core NATS)


class StreamSpec(Struct, frozen=True):
    name: str
    subjects: tuple[str, ...]
    description: str


def site_subject(site: str, subject: str) -> str:
    """``subject`` (or pattern) of the default site as the named ``site`` has it:
    ``lanscope.host.seen.>`` -> ``lanscope.paris.host.seen.>`` (``*``: any named site)."""
    if not site:
        return subject
    return f"{PREFIX}.{site}{subject[len(PREFIX):]}"


def any_site(pattern: str) -> str:
    """The pattern for every named site: ``lanscope.*.host.seen.>``."""
    return site_subject("*", pattern)


def everywhere(*patterns: str) -> tuple[str, ...]:
    """Each pattern for the default site and for every named site."""
    return tuple(p for pattern in patterns for p in (pattern, any_site(pattern)))


def site_of_subject(subject: str) -> str:
    """The site a subject belongs to: its second token unless that is an entity ("" then)."""
    token = subject.split(".", 2)[1] if subject.count(".") >= 2 else ""
    return "" if token in ENTITIES else token


FACTS = StreamSpec(
    name="LANSCOPE_FACTS",
    subjects=everywhere(HOST_SEEN, HOST_ANNOTATED, HOST_PORTS, SWEEP_COMPLETED, HOST_UNREACHABLE),
    description="Sightings, enrichments and probe results (replayable: rebuilds DuckDB)",
)
CHANGES = StreamSpec(
    name="LANSCOPE_CHANGES",
    subjects=everywhere(HOST_CHANGED, FINDING, REGISTRY),
    description="Conclusions: host changes, findings, registry entries",
)
DEAD_LETTERS = StreamSpec(
    name="LANSCOPE_DLQ",
    subjects=everywhere(DLQ),
    description="Messages a stage could not handle, with the reason in headers",
)
REQUESTS = StreamSpec(
    name="LANSCOPE_REQUESTS",
    subjects=everywhere(PROBE_REQUESTED, HOST_CHECK),
    description="What is asked of the pipeline: probe a host now (people), check a host before it "
                "is gone (host_state); the stage asked drops stale ones",
)
STREAMS: tuple[StreamSpec, ...] = (FACTS, CHANGES, DEAD_LETTERS, REQUESTS)

# What a sensor produces and keeps until its hub has copied it: its sightings, sweeps, probe
# results, what its hosts say of themselves (mDNS, SSDP, NetBIOS, SNMP) and the presence
# checks they failed, its stages' dead letters, and the probe and presence-check requests for
# its site (presence_check runs on the segment).
_SENSOR_STREAMS: tuple[tuple[StreamSpec, tuple[str, ...]], ...] = (
    (FACTS, (HOST_SEEN, SWEEP_COMPLETED, HOST_PORTS, HOST_ANNOTATED, HOST_UNREACHABLE)),
    (DEAD_LETTERS, (DLQ,)),
    (REQUESTS, (PROBE_REQUESTED, HOST_CHECK)),
)


def sensor_stream_name(base: StreamSpec, site: str) -> str:
    return f"{base.name}-{site}"


def sensor_streams(site: str) -> tuple[StreamSpec, ...]:
    """A sensor's streams: its own site's subjects only, named after the site."""
    return tuple(StreamSpec(name=sensor_stream_name(base, site),
                            subjects=tuple(site_subject(site, p) for p in patterns),
                            description=f"{base.description} (site {site}, until the hub has them)")
                 for base, patterns in _SENSOR_STREAMS)


def site_of_stream(name: str) -> str | None:
    """The site whose sensor keeps the stream ``name``; None for any other stream."""
    for base, _ in _SENSOR_STREAMS:
        if name.startswith(base.name + "-"):
            return name[len(base.name) + 1:]
    return None

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
    """The full subject an event is published on (under its site's token, if it has one)."""
    route = _PREFIXES.get(type(event))
    if route is None:
        raise TypeError(f"no subject for event type {type(event).__name__}")
    prefix, last_token = route
    subject = prefix if last_token is None else prefix + last_token(event)
    return site_subject(event.site, subject) if event.site else subject


def dlq_subject(stage: str, site: str = "") -> str:
    return site_subject(site, f"{PREFIX}.dlq.{_token(stage)}")


def stream_for(subject: str, streams: tuple[StreamSpec, ...] = STREAMS) -> StreamSpec:
    """The stream (of ``streams``) that captures a concrete subject."""
    for stream in streams:
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
