"""The pipeline graph: every stage, what it consumes, what it emits.

One table, read by the runner, `lanscope provision`, the compose test and the
graph test (every consumed subject is produced by someone).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from schemas import (
    Event,
    Finding,
    HostAnnotated,
    HostChanged,
    HostSeen,
    PortsProbed,
    RegistryEntry,
    SweepCompleted,
)
from schemas import subjects as subj


class Kind(enum.StrEnum):
    PRODUCER = "producers"
    ENRICHER = "enrichers"
    SINK = "sinks"


@runtime_checkable
class Producer(Protocol):
    """Says "I saw this host". The runtime calls sweep() every interval_secs."""

    interval_secs: float

    async def sweep(self) -> list[Event]: ...


@runtime_checkable
class Enricher(Protocol):
    """Adds knowledge to one event; returns zero or more new events.

    Raises only where a retry can help (the runtime naks with a delay)."""

    async def handle(self, event: Event) -> list[Event]: ...


@runtime_checkable
class Sink(Protocol):
    """Keeps state. write() commits a batch and returns the events to publish.

    The runtime publishes the returned events (waiting for PubAck) and only
    then acks the batch. A redelivered input must be harmless: write() returns
    the same outputs for it again (outbox), so nothing is lost between the
    commit and the publish. ``redelivered`` names the inputs the bus delivered
    before (only those can have been committed before); None: any may have been."""

    async def open(self) -> None: ...

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class StageSpec:
    name: str                              # short, unique: the durable consumer name
    kind: Kind
    builder: str                           # function name in lanscope.stages
    consumes: tuple[str, ...] = ()         # subject filters (enrichers and sinks)
    emits: tuple[type[Event], ...] = ()
    description: str = ""
    max_replicas: int | None = None        # 1 for the DuckDB owner
    raw_sockets: bool = False              # needs CAP_NET_RAW (compose)
    batch_size: int = 64                   # messages fetched at once
    concurrency: int = 16                  # events handled at once per process (enrichers)
    ack_wait_secs: float | None = None     # None: the nats config's ack_wait_secs

    @property
    def qualified(self) -> str:
        return f"{self.kind.value}.{self.name}"

    @property
    def durable(self) -> str:
        return self.name


STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec("arp_sweep", Kind.PRODUCER, "build_arp_sweep", emits=(HostSeen, SweepCompleted),
                  description="ARP requests to every address of the attached subnets",
                  raw_sockets=True),
        StageSpec("ping_sweep", Kind.PRODUCER, "build_ping_sweep", emits=(HostSeen, SweepCompleted),
                  description="ICMP echo sweep, TCP ping for hosts that drop ICMP",
                  raw_sockets=True),
        StageSpec("neighbours", Kind.PRODUCER, "build_neighbours", emits=(HostSeen,),
                  description="The kernel's IPv4/IPv6 neighbour table"),
        StageSpec("dhcp_leases", Kind.PRODUCER, "build_dhcp_leases", emits=(HostSeen, SweepCompleted),
                  description="MikroTik DHCP leases and ARP table, local lease files"),
        StageSpec("proxmox_guests", Kind.PRODUCER, "build_proxmox_guests", emits=(HostSeen,),
                  description="Proxmox VMs and containers as sightings"),
        StageSpec("port_probe", Kind.ENRICHER, "build_port_probe",
                  consumes=(subj.HOST_SEEN, subj.PROBE_REQUESTED), emits=(PortsProbed,),
                  description="TCP/UDP ports, banners, service/version/OS fingerprints",
                  raw_sockets=True, batch_size=16, concurrency=8, ack_wait_secs=60),
        StageSpec("dns_names", Kind.ENRICHER, "build_dns_names",
                  consumes=(subj.HOST_SEEN,), emits=(HostAnnotated,),
                  description="Reverse DNS names (dnspython)", concurrency=64),
        StageSpec("mac_vendor", Kind.ENRICHER, "build_mac_vendor",
                  consumes=(subj.HOST_SEEN,), emits=(HostAnnotated,),
                  description="MAC vendor from offline OUI data", batch_size=256, concurrency=64),
        StageSpec("proxmox_names", Kind.ENRICHER, "build_proxmox_names",
                  consumes=(subj.HOST_SEEN,), emits=(HostAnnotated,),
                  description="Proxmox guest name, vmid, node, status by MAC or IP",
                  concurrency=64),
        StageSpec("host_state", Kind.SINK, "build_host_state",
                  consumes=(subj.HOST_SEEN, subj.HOST_ANNOTATED, subj.HOST_PORTS,
                            subj.SWEEP_COMPLETED, subj.FINDING, subj.REGISTRY),
                  emits=(HostChanged,),
                  description="Host records, change detection, history; owns DuckDB",
                  max_replicas=1, batch_size=4000),
        StageSpec("findings", Kind.SINK, "build_findings",
                  consumes=(subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_CHANGED),
                  emits=(Finding,),
                  description="Security findings, opened and resolved", batch_size=500),
        StageSpec("registry", Kind.SINK, "build_registry",
                  consumes=(subj.HOST_CHANGED,), emits=(RegistryEntry,),
                  description="Host registry: register new hosts or sync existing entries",
                  batch_size=500),
    )
}


def resolve(name: str) -> StageSpec:
    """Find a stage by short (``port_probe``) or qualified (``enrichers.port_probe``) name."""
    short = name.split(".", 1)[1] if "." in name else name
    spec = STAGES.get(short)
    if spec is None or ("." in name and name != spec.qualified):
        known = ", ".join(s.qualified for s in STAGES.values())
        raise KeyError(f"unknown stage {name!r}; known stages: {known}")
    return spec


# Events people publish, not stages: subject -> who.
PUBLISHED_BY_PEOPLE: dict[str, str] = {
    subj.PROBE_REQUESTED: "the dashboard's \"probe now\" (lanscope.web)",
}


def emitted_subject_patterns() -> set[str]:
    """Subject patterns that some stage, or a person through the dashboard, publishes on
    (for the graph test)."""
    patterns: set[str] = set(PUBLISHED_BY_PEOPLE)
    by_type = {
        HostSeen: subj.HOST_SEEN, SweepCompleted: subj.SWEEP_COMPLETED,
        HostAnnotated: subj.HOST_ANNOTATED, PortsProbed: subj.HOST_PORTS,
        HostChanged: subj.HOST_CHANGED, Finding: subj.FINDING, RegistryEntry: subj.REGISTRY,
    }
    for spec in STAGES.values():
        patterns.update(by_type[t] for t in spec.emits)
    return patterns
