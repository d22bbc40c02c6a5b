"""The pipeline graph: every stage, what it consumes, what it emits, how it is built.

One table, read by the runner, `lanscope provision`, config.yaml's loader
(``lanscope.config``: one section per stage, of the stage's ``Config`` type),
the compose test and the graph test (every consumed subject is produced by
someone). Each stage's ``Config`` and ``build`` live beside the stage.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import enrichers.dns_names.stage as dns_names
import enrichers.mac_vendor.stage as mac_vendor
import enrichers.netbios.stage as netbios
import enrichers.port_probe.stage as port_probe
import enrichers.presence_check.stage as presence_check
import enrichers.proxmox_names.stage as proxmox_names
import enrichers.snmp.stage as snmp
import producers.arp_sweep.stage as arp_sweep
import producers.dhcp_leases.stage as dhcp_leases
import producers.mdns.stage as mdns
import producers.neighbours.stage as neighbours
import producers.passive.stage as passive
import producers.ping_sweep.stage as ping_sweep
import producers.proxmox_guests.stage as proxmox_guests
import producers.ssdp.stage as ssdp
import sinks.findings.stage as findings
import sinks.host_state.stage as host_state
import sinks.notify.stage as notify
import sinks.registry.stage as registry
from lanscope.runtime.stage import Enricher, Producer, Sink, StageContext, StageDisabled
from schemas import (
    Event,
    Finding,
    HostAnnotated,
    HostChanged,
    HostCheckRequested,
    HostSeen,
    HostUnreachable,
    PortsProbed,
    RegistryEntry,
    SweepCompleted,
)
from schemas import subjects as subj


class Kind(enum.StrEnum):
    PRODUCER = "producers"          # also the config.yaml section that holds the stage's Config
    ENRICHER = "enrichers"
    SINK = "sinks"


# Runtime tuning a stage's Config may set (a sink's batch size and flush interval, an
# enricher's concurrency): the runner takes it from there, whatever the stage.
_TUNING = ("batch_size", "concurrency", "flush_ms")


@dataclass(frozen=True)
class StageSpec:
    name: str                              # short, unique: the durable consumer name
    kind: Kind
    config: type[Any] | None = None        # the stage's Config: its section of config.yaml
    build: Callable[[Any, StageContext], Any] | None = None   # (its Config, context) -> stage
    consumes: tuple[str, ...] = ()         # subject filters (enrichers and sinks)
    emits: tuple[type[Event], ...] = ()
    description: str = ""
    max_replicas: int | None = None        # 1 for the DuckDB owner
    raw_sockets: bool = False              # needs CAP_NET_RAW (compose)
    batch_size: int = 64                   # messages fetched at once (a sink's: its Config's)
    concurrency: int = 16                  # events handled at once per process (enrichers; the
                                           # Config's where it has one)
    flush_ms: int | None = None            # a sink's batch waits this long to fill (its Config's)
    ack_wait_secs: float | None = None     # None: the nats config's ack_wait_secs
    segment: bool = False                  # an enricher that talks to the hosts themselves: on a
                                           # sensor (role: sensor runs these and the producers)
    uses_claims: bool = False              # reads and writes the claims KV bucket (its role may)
    answers: tuple[str, ...] = ()          # subjects it answers requests on (core NATS)

    @property
    def qualified(self) -> str:
        return f"{self.kind.value}.{self.name}"

    @property
    def durable(self) -> str:
        return self.name

    def tuned(self, config: Any) -> StageSpec:
        """This spec with the runtime tuning its stage's ``config`` sets (``batch_size``,
        ``concurrency``, ``flush_ms``)."""
        changes = {name: getattr(config, name) for name in _TUNING if hasattr(config, name)}
        return dataclasses.replace(self, **changes) if changes else self

    def instantiate(self, config: Any, ctx: StageContext) -> Any:
        """The stage built from ``config`` (its section); StageDisabled when that says
        ``enabled: false`` or the builder finds it cannot run (no gateway, no Proxmox ...)."""
        if self.build is None:
            raise LookupError(f"stage {self.qualified} has no builder")
        if not config.enabled:
            raise StageDisabled(f"{self.qualified}.enabled is false")
        return self.build(config, ctx)


# Each spec carries the tuning of its Config's defaults; Config.stage_specs() (lanscope.config)
# tunes them from config.yaml.
STAGES: dict[str, StageSpec] = {
    spec.name: spec.tuned(spec.config()) if spec.config is not None else spec
    for spec in (
        StageSpec("arp_sweep", Kind.PRODUCER, arp_sweep.Config, arp_sweep.build,
                  emits=(HostSeen, SweepCompleted),
                  description="ARP requests to every address of the attached subnets",
                  raw_sockets=True),
        StageSpec("ping_sweep", Kind.PRODUCER, ping_sweep.Config, ping_sweep.build,
                  emits=(HostSeen, SweepCompleted),
                  description="ICMP echo sweep, TCP ping for hosts that drop ICMP",
                  raw_sockets=True),
        StageSpec("neighbours", Kind.PRODUCER, neighbours.Config, neighbours.build, emits=(HostSeen,),
                  description="The kernel's IPv4/IPv6 neighbour table"),
        StageSpec("dhcp_leases", Kind.PRODUCER, dhcp_leases.Config, dhcp_leases.build,
                  emits=(HostSeen, SweepCompleted),
                  description="MikroTik DHCP leases and ARP table, local lease files"),
        StageSpec("proxmox_guests", Kind.PRODUCER, proxmox_guests.Config, proxmox_guests.build,
                  emits=(HostSeen,), description="Proxmox VMs and containers as sightings"),
        StageSpec("passive", Kind.PRODUCER, passive.Config, passive.build,
                  emits=(HostSeen, HostAnnotated),
                  description="Listens for ARP, DHCP and NDP; each sighting at once (sends nothing)",
                  raw_sockets=True),
        StageSpec("mdns", Kind.PRODUCER, mdns.Config, mdns.build, emits=(HostAnnotated,),
                  description="mDNS/DNS-SD: services, .local names and models devices announce"),
        StageSpec("ssdp", Kind.PRODUCER, ssdp.Config, ssdp.build, emits=(HostAnnotated,),
                  description="SSDP/UPnP: device names, models, makers and types"),
        StageSpec("port_probe", Kind.ENRICHER, port_probe.Config, port_probe.build,
                  consumes=subj.everywhere(subj.HOST_SEEN, subj.PROBE_REQUESTED), emits=(PortsProbed,),
                  description="TCP/UDP ports, banners, service/version/OS fingerprints",
                  raw_sockets=True, batch_size=16, ack_wait_secs=60, segment=True, uses_claims=True),
        StageSpec("dns_names", Kind.ENRICHER, dns_names.Config, dns_names.build,
                  consumes=subj.everywhere(subj.HOST_SEEN), emits=(HostAnnotated,),
                  description="Reverse DNS names (dnspython)"),
        StageSpec("mac_vendor", Kind.ENRICHER, mac_vendor.Config, mac_vendor.build,
                  consumes=subj.everywhere(subj.HOST_SEEN), emits=(HostAnnotated,),
                  description="MAC vendor from offline OUI data", batch_size=256),
        StageSpec("proxmox_names", Kind.ENRICHER, proxmox_names.Config, proxmox_names.build,
                  consumes=subj.everywhere(subj.HOST_SEEN), emits=(HostAnnotated,),
                  description="Proxmox guest name, vmid, node, status by MAC or IP"),
        StageSpec("netbios", Kind.ENRICHER, netbios.Config, netbios.build,
                  consumes=subj.everywhere(subj.HOST_SEEN), emits=(HostAnnotated,),
                  description="NetBIOS names and workgroups (NBSTAT, UDP 137)", segment=True),
        StageSpec("snmp", Kind.ENRICHER, snmp.Config, snmp.build,
                  consumes=subj.everywhere(subj.HOST_SEEN), emits=(HostAnnotated,),
                  description="SNMP system group, interfaces and LLDP neighbours (with a credential)",
                  segment=True),
        StageSpec("presence_check", Kind.ENRICHER, presence_check.Config, presence_check.build,
                  consumes=subj.everywhere(subj.HOST_CHECK), emits=(HostSeen, HostUnreachable),
                  description="ARP / ICMP / TCP check of a host before it is said to be gone",
                  raw_sockets=True, segment=True),
        StageSpec("host_state", Kind.SINK, host_state.Config, host_state.build,
                  consumes=subj.everywhere(subj.HOST_SEEN, subj.HOST_ANNOTATED, subj.HOST_PORTS,
                                           subj.SWEEP_COMPLETED, subj.HOST_UNREACHABLE, subj.FINDING,
                                           subj.REGISTRY),
                  emits=(HostChanged, HostCheckRequested),
                  description="Host records, change detection, history; owns DuckDB",
                  max_replicas=1, answers=(subj.QUERY,)),
        StageSpec("findings", Kind.SINK, findings.Config, findings.build,
                  consumes=subj.everywhere(subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_CHANGED),
                  emits=(Finding,), description="Security findings, opened and resolved"),
        StageSpec("registry", Kind.SINK, registry.Config, registry.build,
                  consumes=subj.everywhere(subj.HOST_CHANGED), emits=(RegistryEntry,),
                  description="Host registry: register new hosts or sync existing entries"),
        StageSpec("notify", Kind.SINK, notify.Config, notify.build,
                  consumes=subj.everywhere(subj.HOST_CHANGED, subj.FINDING),
                  description="Notifications: Apprise, webhooks, MQTT with Home Assistant discovery"),
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


# Events people publish, not stages: subject -> who (the graph test counts them as produced).
PUBLISHED_BY_PEOPLE: dict[str, str] = {
    subj.PROBE_REQUESTED: "the dashboard's \"probe now\" (lanscope.web)",
}


# ---------------------------------------------------------------------- feeds


def consumer_bindings(spec: StageSpec, streams: tuple[subj.StreamSpec, ...] = subj.STREAMS) \
        -> dict[str, list[str]]:
    """Stream name -> the stage's filter subjects in it (a sink may read from two streams);
    ``streams``: the process's (a sensor has its own, lanscope.runtime.layout)."""
    bindings: dict[str, list[str]] = {}
    for pattern in spec.consumes:
        bindings.setdefault(subj.stream_for(pattern, streams).name, []).append(pattern)
    return bindings


@dataclass(frozen=True)
class Feed:
    """One durable consumer on one stream that feeds stages of one process.

    Sinks of one process that read the same stream share one: each message is
    delivered, received and decoded once, however many of them want it. Its name
    joins theirs (``findings+host_state``); a sink alone on a stream, and every
    enricher, reads through its own durable, named after the stage."""

    stream: str
    spec: StageSpec                 # the consumer: the stage's own spec, or one made for the group
    members: tuple[str, ...]        # the stages it feeds, by name

    @property
    def shared(self) -> bool:
        return len(self.members) > 1


def own_feeds(spec: StageSpec, streams: tuple[subj.StreamSpec, ...] = subj.STREAMS) -> list[Feed]:
    """A stage's own durable on each stream it reads."""
    return [Feed(stream, spec, (spec.name,)) for stream in consumer_bindings(spec, streams)]


def sink_feeds(specs: Iterable[StageSpec], streams: tuple[subj.StreamSpec, ...] = subj.STREAMS) -> list[Feed]:
    """How the sinks among ``specs``, run in one process, read their streams."""
    readers: dict[str, list[StageSpec]] = {}
    for spec in specs:
        if spec.kind is Kind.SINK:
            for stream in consumer_bindings(spec, streams):
                readers.setdefault(stream, []).append(spec)
    feeds: list[Feed] = []
    for stream, sinks in readers.items():
        if len(sinks) == 1:
            feeds.append(Feed(stream, sinks[0], (sinks[0].name,)))
            continue
        sinks = sorted(sinks, key=lambda s: s.name)
        filters = list(dict.fromkeys(f for s in sinks for f in consumer_bindings(s, streams)[stream]))
        waits = [s.ack_wait_secs for s in sinks if s.ack_wait_secs is not None]
        names = tuple(s.name for s in sinks)
        # The group's consumer: built from the first sink's spec (it is never built as a stage).
        spec = dataclasses.replace(
            sinks[0], name="+".join(names), consumes=tuple(filters),
            description=f"one delivery for the sinks {', '.join(names)} in one process",
            max_replicas=1, batch_size=max(s.batch_size for s in sinks),
            ack_wait_secs=max(waits) if waits else None)
        feeds.append(Feed(stream, spec, names))
    return feeds


__all__ = ["PUBLISHED_BY_PEOPLE", "STAGES", "Enricher", "Feed", "Kind", "Producer", "Sink", "StageSpec",
           "consumer_bindings", "own_feeds", "resolve", "sink_feeds"]
