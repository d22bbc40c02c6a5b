"""Folding facts into host records: identity, presence and change detection. No I/O.

``HostBook`` holds every host the sink knows (loaded from DuckDB at open) and
folds one event at a time. What it concludes for a batch comes back as a
``Folded``: the records to write, the history rows, the hosts to delete (an
IP-keyed record merged into its MAC-keyed one) and one ``HostChanged`` per
host that changed.

Rules:

- Identity: the MAC first; an IP-only fact goes to the MAC record that owns
  that IP now, else to an IP-keyed record (off-link hosts). Keys are of the
  fact's site (``site_key``: ``paris/<mac>``; the default site's are bare), so
  the same range or MAC at two sites is two hosts. A fact carrying
  both a MAC and an IP that has an IP-keyed record merges that record into
  the MAC record, so a host first seen by IP and later with its MAC stays one
  host.
- Order: every field remembers the ``observed_at`` of its value; an older
  fact never overwrites a newer one, whatever order the bus delivers them in.
- Presence: alive evidence (``HostSeen.alive``) makes a host active; a stale
  neighbour entry alone never does. A host is gone after ``missed_sweeps``
  sweeps that covered its IP (``SweepCompleted.covered``: the addresses the
  sweep sent to) without seeing it *and* ``grace_secs`` since its last
  evidence, both measured in event time (so a replay decides the same). A
  sweep counts for its own site's hosts only, so a site whose events arrive late
  (its sensor's link to the hub was down) is judged by its own sweeps when they
  arrive, never by the silence meanwhile.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from lanscope.net.coverage import read_coverage
from schemas import (
    ChangeKind,
    Event,
    FieldChange,
    HostAnnotated,
    HostChanged,
    HostRecord,
    HostSeen,
    PortResult,
    PortsProbed,
    PortState,
    Protocol,
    ProxmoxGuest,
    SweepCompleted,
    normalize_ip,
    normalize_mac,
    port_name,
    site_key,
)

from . import describe

STAGE = "host_state"

# Fields whose changes become history rows and HostChanged field changes.
TRACKED = ("ip", "hostname", "os_hint", "services", "open_ports", "dhcp_type", "dhcp_status",
           "dhcp_comment", "arp_state", "active", "vendor", "vm_name", *describe.TRACKED)

# Hostname sources from most to least trusted; the name shown is the first one
# known, so two sources that disagree do not make the name flap every sweep.
_HOSTNAME_PRIORITY = ("dns", "dhcp", "lease", "proxmox", *describe.NAME_SOURCES)
_MAX_IPS = 16
_ANSWERED = (PortState.OPEN, PortState.CLOSED)


# gc=False (as the events): rows and entries hold values and event parts, no cycles; the
# book is the sink's largest heap and no longer walked by every full collection.
class PortRow(msgspec.Struct, kw_only=True, gc=False):
    """One port of one host with its lifetime."""

    result: PortResult
    first_seen: datetime
    last_seen: datetime
    state_since: datetime


class HostEntry(msgspec.Struct, kw_only=True, gc=False):
    """A host record plus what folding needs to remember about it."""

    record: HostRecord
    field_at: dict[str, datetime] = {}
    hostnames: dict[str, str] = {}           # source -> name
    ips_at: dict[str, datetime] = {}         # every IP of this host -> last seen
    ports: dict[str, PortRow] = {}           # "tcp/22" -> row
    ports_at: datetime | None = None
    advertised_by: dict[str, list[str]] = {}  # source -> the service types it last reported
    last_evidence_at: datetime | None = None
    last_evidence: str | None = None
    missed_sweeps: int = 0
    presence_at: datetime | None = None      # time of the last active/gone transition
    ever_active: bool = False


class HistoryRow(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    host_key: str
    field: str
    old: Any
    new: Any
    source: str
    observed_at: datetime
    event_id: str


@dataclass
class _Pending:
    """What one host accumulated during one batch."""

    created: bool = False
    transition: ChangeKind | None = None
    evidence: str | None = None
    changes: dict[str, FieldChange] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    observed_at: datetime | None = None
    source: str = ""
    event: Event | None = None               # the newest fact folded into the host


@dataclass
class Folded:
    """The result of folding one batch."""

    upserts: dict[str, HostEntry] = field(default_factory=dict)
    deletes: dict[str, str] = field(default_factory=dict)     # removed host_key -> merged into
    history: list[HistoryRow] = field(default_factory=list)
    changed: list[HostChanged] = field(default_factory=list)
    contributors: dict[str, list[str]] = field(default_factory=dict)  # output id -> input ids
    ports_dirty: set[str] = field(default_factory=set)                # hosts whose ports changed


@dataclass(frozen=True)
class PresencePolicy:
    missed_sweeps: int = 3
    grace_secs: float = 900.0


# Canonical dotted-quad IPv4 text (no leading zeros), which normalize_ip returns unchanged.
_CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


@functools.lru_cache(maxsize=65536)
def _ip_key(ip: str) -> str:
    if _CANONICAL_V4.fullmatch(ip):   # the common case; parsing it costs a new host ~5 us
        return ip
    return normalize_ip(ip)


@functools.lru_cache(maxsize=65536)
def _mac_key(mac: str) -> str:
    return normalize_mac(mac)


def _port_order(p: PortResult) -> tuple[str, int]:
    return (p.protocol, p.port)


# Service texts repeat for every probe of every host: cached, ~0.15 us instead of ~1 us.
def _service_text(p: PortResult) -> str:
    return _text_of(p.protocol, p.port, p.service, p.product, p.version)


@functools.lru_cache(maxsize=65536)
def _text_of(protocol: Protocol, port: int, service: str | None, product: str | None,
             version: str | None) -> str:
    parts = [port_name(protocol, port), service or "", product or "", version or ""]
    return " ".join(x for x in parts if x)[:255]


def _entry_for_new(host_key: str, mac: str | None, site: str) -> HostEntry:
    return HostEntry(record=HostRecord(host_key=host_key, mac=mac, site=site))


class HostBook:
    """Every known host, folded from facts in event time."""

    def __init__(self, policy: PresencePolicy, entries: Iterable[HostEntry] = ()) -> None:
        self.policy = policy
        self.hosts: dict[str, HostEntry] = {}
        self._by_ip: dict[str, tuple[datetime, str]] = {}   # ip -> (when, owner host_key)
        for entry in entries:
            key, site = entry.record.host_key, entry.record.site
            self.hosts[key] = entry
            for ip, when in entry.ips_at.items():
                self._index_ip(site_key(site, ip), when, key)
            if entry.record.ip and entry.record.ip not in entry.ips_at and entry.record.mac is None:
                self._index_ip(site_key(site, entry.record.ip), entry.record.last_seen or datetime.min, key)
        self._pending: dict[str, _Pending] = {}
        self._folded = Folded()
        # Hosts whose open_ports and services the next snapshot must derive from the rows
        # again: port rows changed outside _probed (a merge); loaded ones, once, to be sure.
        self._ports_stale: set[str] = {key for key, entry in self.hosts.items() if entry.ports}

    # ------------------------------------------------------------------ batch

    def fold(self, events: list[Event]) -> Folded:
        """Fold a batch (in observed_at order) and return what to write and publish."""
        self._pending = {}
        self._folded = Folded()
        for event in sorted(events, key=lambda e: e.observed_at):
            if isinstance(event, HostSeen):
                self._seen(event)
            elif isinstance(event, HostAnnotated):
                self._annotated(event)
            elif isinstance(event, PortsProbed):
                self._probed(event)
            elif isinstance(event, SweepCompleted):
                self._sweep(event)
        return self._finish()

    def _finish(self) -> Folded:
        folded = self._folded
        for key, pending in self._pending.items():
            entry = self.hosts.get(key)
            if entry is None:      # merged away later in the batch
                continue
            self._device_type(entry, pending)
            folded.upserts[key] = entry
            if pending.created:
                kind = ChangeKind.NEW
            elif pending.transition is not None:
                kind = pending.transition
            elif pending.changes:
                kind = ChangeKind.CHANGED
            else:
                continue
            assert pending.observed_at is not None
            event = HostChanged(
                host_key=key, observed_at=pending.observed_at, source=STAGE, site=entry.record.site,
                kind=kind,
                changes=list(pending.changes.values()), host=copy.copy(entry.record),
                evidence=pending.evidence)
            event.id = _output_id(key, kind, pending)
            folded.changed.append(event)
            folded.contributors[event.id] = pending.inputs
        return folded

    # ---------------------------------------------------------------- identity

    def _index_ip(self, ip: str, when: datetime, key: str) -> None:
        current = self._by_ip.get(ip)
        if current is None or when >= current[0] or current[1] not in self.hosts:
            self._by_ip[ip] = (when, key)

    def owner_of_ip(self, ip: str, site: str = "") -> str | None:
        current = self._by_ip.get(site_key(site, ip))
        return current[1] if current and current[1] in self.hosts else None

    def _resolve(self, event: Event, mac: str | None, ip: str | None) -> tuple[HostEntry, _Pending]:
        """The entry a fact belongs to (at the fact's site), creating or merging as identity demands."""
        mac = _mac_key(mac) if mac else None
        ip = _ip_key(ip) if ip else None
        site = event.site
        if mac:
            key = site_key(site, mac)
            entry = self.hosts.get(key)
            ip_entry = self.hosts.get(site_key(site, ip)) if ip else None
            if ip_entry is not None and ip_entry.record.mac is None:
                entry = self._merge_ip_record(ip_entry, key, mac, entry, event)
            if entry is None:
                entry = _entry_for_new(key, mac, site)
                self.hosts[key] = entry
                self._touch(key, event).created = True
        elif ip:
            owner = self.owner_of_ip(ip, site)
            key = owner if owner is not None else site_key(site, ip)
            entry = self.hosts.get(key)
            if entry is None:
                entry = _entry_for_new(key, None, site)
                self.hosts[key] = entry
                self._touch(key, event).created = True
        else:
            raise ValueError(f"{type(event).__name__} {event.id or ''} has neither a MAC nor an IP")
        pending = self._touch(key, event)
        if ip:
            self._set_ip(entry, ip, event, pending)
        return entry, pending

    def _merge_ip_record(self, ip_entry: HostEntry, key: str, mac: str, mac_entry: HostEntry | None,
                         event: Event) -> HostEntry:
        """A host known by IP only shows its MAC: fold the IP record into the MAC record
        (``key``: the MAC's host key at the site)."""
        old_key = ip_entry.record.host_key
        del self.hosts[old_key]
        self._folded.upserts.pop(old_key, None)
        self._folded.deletes[old_key] = key
        pending_old = self._pending.pop(old_key, None)
        for row in self._folded.history:
            if row.host_key == old_key:
                row.host_key = key
        if mac_entry is None:
            # The same host, now with its identity: re-key, no "new" event.
            ip_entry.record.host_key = key
            ip_entry.record.mac = mac
            self.hosts[key] = ip_entry
            pending = self._touch(key, event)
            if pending_old is not None:
                pending.created = pending_old.created
                pending.changes.update(pending_old.changes)
                pending.inputs[:0] = pending_old.inputs
                pending.transition = pending_old.transition
                pending.evidence = pending_old.evidence
            self._change(ip_entry, pending, "mac", None, mac, event, track=False)
            merged = ip_entry
        else:
            merged = mac_entry
            rec, other = merged.record, ip_entry.record
            if other.first_seen and (rec.first_seen is None or other.first_seen < rec.first_seen):
                rec.first_seen = other.first_seen
            for ip, when in ip_entry.ips_at.items():
                merged.ips_at[ip] = max(when, merged.ips_at.get(ip, when))
            rec.ips = sorted(merged.ips_at, key=lambda k: merged.ips_at[k], reverse=True)
            for name, port_row in ip_entry.ports.items():
                merged.ports.setdefault(name, port_row)
            self._ports_stale.add(key)
            for source, name in ip_entry.hostnames.items():
                merged.hostnames.setdefault(source, name)
            pending = self._touch(key, event)
            if pending_old is not None:
                pending.inputs[:0] = pending_old.inputs
        for ip in list(merged.ips_at):
            self._index_ip(site_key(merged.record.site, ip), merged.ips_at[ip], key)
        self._folded.ports_dirty.add(key)
        return merged

    def _touch(self, key: str, event: Event) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:   # not setdefault: a throwaway _Pending per event is ~1/4 of the fold
            pending = self._pending[key] = _Pending()
        if event.id and (not pending.inputs or pending.inputs[-1] != event.id):
            pending.inputs.append(event.id)
        if pending.observed_at is None or event.observed_at > pending.observed_at:
            pending.observed_at = event.observed_at
        pending.source = event.source
        pending.event = event
        return pending

    # ------------------------------------------------------------------ fields

    def _change(self, entry: HostEntry, pending: _Pending, name: str, old: Any, new: Any,
                event: Event, *, track: bool = True) -> None:
        if old == new:
            return
        if track:
            previous = pending.changes.get(name)
            first_old = previous.old if previous is not None else old
            if first_old == new:
                pending.changes.pop(name, None)
            else:
                pending.changes[name] = FieldChange(field=name, old=first_old, new=new)
        self._folded.history.append(HistoryRow(
            host_key=entry.record.host_key, field=name, old=old, new=new, source=event.source,
            observed_at=event.observed_at, event_id=event.id))

    def _set(self, entry: HostEntry, pending: _Pending, name: str, value: Any, event: Event) -> None:
        """Set a tracked field if this fact is not older than the value it would replace."""
        at = entry.field_at.get(name)
        if at is not None and event.observed_at < at:
            return
        entry.field_at[name] = event.observed_at
        old = getattr(entry.record, name)
        if old != value:
            setattr(entry.record, name, value)
            self._change(entry, pending, name, old, value, event)

    def _set_ip(self, entry: HostEntry, ip: str, event: Event, pending: _Pending) -> None:
        when = event.observed_at
        ips_at = entry.ips_at
        before = ips_at.get(ip)
        if before is None or when > before:
            ips_at[ip] = when
        ips = entry.record.ips
        # record.ips is ips_at newest first (kept so by every change of ips_at): an IP that
        # was the newest still is, so the usual re-sighting need not sort and copy the list.
        if not (ips and ips[0] == ip and len(ips) == len(ips_at) <= _MAX_IPS):
            if len(ips_at) > _MAX_IPS:
                oldest = min(ips_at, key=lambda k: ips_at[k])
                del ips_at[oldest]
            entry.record.ips = sorted(ips_at, key=lambda k: ips_at[k], reverse=True)
        self._index_ip(site_key(entry.record.site, ip), when, entry.record.host_key)
        self._set(entry, pending, "ip", ip, event)

    def _stamp(self, entry: HostEntry, event: Event) -> None:
        rec = entry.record
        if rec.first_seen is None or event.observed_at < rec.first_seen:
            rec.first_seen = event.observed_at
        if rec.last_seen is None or event.observed_at > rec.last_seen:
            rec.last_seen = event.observed_at

    def _hostname(self, entry: HostEntry, pending: _Pending, source: str, name: str | None,
                  event: Event) -> None:
        if not name:
            return
        entry.hostnames[source] = name[:255]
        entry.record.names = dict(entry.hostnames)
        ranked = sorted(entry.hostnames.items(),
                        key=lambda kv: (_HOSTNAME_PRIORITY.index(kv[0])
                                        if kv[0] in _HOSTNAME_PRIORITY else len(_HOSTNAME_PRIORITY),
                                        kv[0]))
        best = ranked[0][1]
        old = entry.record.hostname
        if old != best:
            entry.record.hostname = best
            entry.field_at["hostname"] = event.observed_at
            self._change(entry, pending, "hostname", old, best, event)

    def _guest(self, entry: HostEntry, pending: _Pending, guest: ProxmoxGuest | None,
               event: Event) -> None:
        if guest is None:
            return
        at = entry.field_at.get("vm_name")
        if at is not None and event.observed_at < at:
            return
        rec = entry.record
        rec.vm_id, rec.vm_type, rec.vm_node, rec.vm_status = (
            guest.vm_id, guest.vm_type, guest.node, guest.status)
        self._set(entry, pending, "vm_name", guest.name, event)

    # ------------------------------------------------------------------ events

    def _seen(self, event: HostSeen) -> None:
        entry, pending = self._resolve(event, event.mac, event.ip)
        self._stamp(entry, event)
        if event.neighbour_state:
            self._set(entry, pending, "arp_state", event.neighbour_state, event)
        elif event.alive and event.evidence == "arp-reply":
            self._set(entry, pending, "arp_state", "reply", event)
        lease = event.lease
        if lease is not None:
            if lease.dynamic is not None:
                self._set(entry, pending, "dhcp_type", "dynamic" if lease.dynamic else "static", event)
            if lease.status is not None:
                self._set(entry, pending, "dhcp_status", lease.status, event)
            if lease.comment is not None:
                self._set(entry, pending, "dhcp_comment", lease.comment, event)
            self._hostname(entry, pending, "dhcp", lease.hostname, event)
        if event.hostname and lease is None:
            self._hostname(entry, pending, "proxmox" if event.guest else event.source,
                           event.hostname, event)
        self._guest(entry, pending, event.guest, event)
        self._facts(entry, pending, describe.seen_facts(event), event)
        if event.alive:
            self._evidence(entry, pending, event)

    def _annotated(self, event: HostAnnotated) -> None:
        entry, pending = self._resolve(event, event.mac, event.ip)
        if event.hostname:
            self._hostname(entry, pending, "proxmox" if event.guest else event.source,
                           event.hostname, event)
        if event.vendor is not None:
            self._set(entry, pending, "vendor", event.vendor, event)
        if event.mac_randomized is not None:
            entry.record.mac_randomized = event.mac_randomized
        self._guest(entry, pending, event.guest, event)
        if event.advertised is not None:
            self._set(entry, pending, "advertised",
                      describe.advertised(entry.advertised_by, event.source, event.advertised), event)
        self._facts(entry, pending, describe.annotated_facts(event), event)

    def _probed(self, event: PortsProbed) -> None:
        entry, pending = self._resolve(event, event.mac, event.ip)
        self._stamp(entry, event)
        if entry.ports_at is not None and event.observed_at < entry.ports_at:
            return
        when = entry.ports_at = event.observed_at
        self._folded.ports_dirty.add(entry.record.host_key)
        ports = entry.ports
        seen: set[str] = set()
        answered = False   # answering on a port is evidence of presence
        changed = False    # a row's result differs from the last snapshot's
        for result in event.ports:
            name = port_name(result.protocol, result.port)
            seen.add(name)
            state = result.state
            answered = answered or state in _ANSWERED
            row = ports.get(name)
            if row is None:
                ports[name] = PortRow(result=result, first_seen=when, last_seen=when, state_since=when)
                changed = True
            else:
                if row.result.state != state:
                    row.state_since = when
                if not changed and row.result != result:
                    changed = True
                row.result = result
                row.last_seen = when
        if len(seen) != len(ports):
            # A full snapshot: ports no longer reported open are closed now (the row stays,
            # with its lifetime, so "when did 23/tcp close" can be answered).
            for name, row in ports.items():
                if name not in seen and row.result.state == PortState.OPEN:
                    row.result = msgspec.structs.replace(row.result, state=PortState.CLOSED,
                                                         reason="not-reported")
                    row.state_since = when
                    row.last_seen = when
                    changed = True
        key = entry.record.host_key
        if changed or key in self._ports_stale or any(p.os_hint for p in event.ports):
            self._ports_stale.discard(key)
            open_rows = sorted((r.result for r in ports.values() if r.result.state == PortState.OPEN),
                               key=_port_order)
            self._set(entry, pending, "open_ports", [port_name(p.protocol, p.port) for p in open_rows], event)
            self._set(entry, pending, "services", [_service_text(p) for p in open_rows if p.service],
                      event)
            os_hint = event.os.name if event.os else next((p.os_hint for p in open_rows if p.os_hint), None)
        else:
            # The same rows as the last snapshot derived them from: the same values; only
            # their times move, as _set would move them (most re-probes of a known host).
            for name in ("open_ports", "services"):
                at = entry.field_at.get(name)
                if at is None or when >= at:
                    entry.field_at[name] = when
            os_hint = event.os.name if event.os else None
        if os_hint:
            self._set(entry, pending, "os_hint", os_hint, event)
        if answered:
            self._evidence(entry, pending, event, "tcp-answer")

    # -------------------------------------------- what hosts say about themselves (issue 23)

    def _facts(self, entry: HostEntry, pending: _Pending, facts: dict[str, Any], event: Event) -> None:
        for name, value in facts.items():
            self._set(entry, pending, name, value, event)

    def _device_type(self, entry: HostEntry, pending: _Pending) -> None:
        """The device type again when the host's evidence changed: a tracked fact, derived from
        the record as the batch left it (so however the facts were batched, it ends the same)."""
        rec = entry.record
        if pending.event is None or not describe.needs_device_type(rec, pending.created,
                                                                   pending.changes.keys()):
            return
        old, new = rec.device_type, describe.device_type(rec).type
        if old != new:
            rec.device_type = new
            self._change(entry, pending, "device_type", old, new, pending.event)

    # ---------------------------------------------------------------- presence

    def _evidence(self, entry: HostEntry, pending: _Pending, event: Event,
                  evidence: str | None = None) -> None:
        what = f"{evidence or getattr(event, 'evidence', '') or 'seen'} via {event.source}"
        rec = entry.record
        when = event.observed_at
        previous = rec.last_seen_by.get(event.source)
        if previous is None or when > previous:
            rec.last_seen_by = {**rec.last_seen_by, event.source: when}
        if entry.last_evidence_at is None or when >= entry.last_evidence_at:
            entry.last_evidence_at = when
            entry.last_evidence = what
            entry.missed_sweeps = 0
        if rec.active or (entry.presence_at is not None and when <= entry.presence_at):
            return
        entry.presence_at = when
        if entry.ever_active and not pending.created:
            pending.transition = ChangeKind.BACK
        pending.evidence = what
        entry.ever_active = True
        old = rec.active
        rec.active = True
        entry.field_at["active"] = when
        self._change(entry, pending, "active", old, True, event)

    def _sweep(self, event: SweepCompleted) -> None:
        coverage = read_coverage(event.covered)    # the stage turned it away if unreadable
        if not coverage:
            return
        start = event.observed_at - timedelta(milliseconds=event.duration_ms)
        grace = timedelta(seconds=self.policy.grace_secs)
        for entry in list(self.hosts.values()):
            rec = entry.record
            if not rec.active or not rec.ip or rec.site != event.site or rec.ip not in coverage:
                continue
            if entry.last_evidence_at is not None and entry.last_evidence_at >= start:
                continue
            entry.missed_sweeps += 1
            self._folded.upserts[rec.host_key] = entry   # the counter must survive a restart
            since = entry.last_evidence_at
            if entry.missed_sweeps < self.policy.missed_sweeps:
                continue
            if since is not None and event.observed_at - since < grace:
                continue
            pending = self._touch(rec.host_key, event)
            pending.transition = ChangeKind.GONE
            pending.evidence = (f"missed {entry.missed_sweeps} sweeps covering {rec.ip} "
                                f"(last: {event.source} {event.sweep_id}); last evidence: "
                                f"{entry.last_evidence or 'none'} at "
                                f"{since.isoformat() if since else 'never'}")
            entry.presence_at = event.observed_at
            rec.active = False
            entry.field_at["active"] = event.observed_at
            self._change(entry, pending, "active", True, False, event)


def _output_id(key: str, kind: ChangeKind, pending: _Pending) -> str:
    """A HostChanged id from the inputs that caused it: a redelivery recomputes the same one."""
    head = f"{STAGE}\0{key}\0{kind.value}\0"
    if pending.inputs:   # one buffer, one hash call: the same bytes as updating piecewise
        return hashlib.blake2b((head + "\0".join(pending.inputs)).encode(), digest_size=16).hexdigest()
    h = hashlib.blake2b(head.encode(), digest_size=16)
    assert pending.observed_at is not None
    h.update(pending.observed_at.isoformat().encode())
    h.update(msgspec.json.encode(sorted(pending.changes)))
    return h.hexdigest()
