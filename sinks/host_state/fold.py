"""Folding facts into host records: identity, facts versus observations, change detection. No I/O.

``HostBook`` holds every host the sink knows (loaded from DuckDB at open) and
folds one event at a time. What it concludes for a batch comes back as a
``Folded``: the records to write, the hosts to delete (an IP-keyed record merged
into its MAC-keyed one), one ``HostChanged`` per host whose facts changed, the
history rows of exactly those changes, and the presence checks to ask for.

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
- Facts (``FACTS``) versus observations: a change of a fact is a field change of
  the host's ``HostChanged``; observations (``arp_state``, ``rtt_ms``, ``ttl``,
  ``last_seen_by``, the last evidence) only update the record.
- History is what was published: one row per ``FieldChange`` of a published
  ``HostChanged`` (net over the batch: first old, last new), with its id. A value
  that came and went within a batch is neither.
- The primary ``ip`` does not flap between the addresses of one host: IPv4 before
  IPv6 before link-local; within a rank a new address wins, a known one only once
  the current one has not been seen for ``IP_STALE_SECS``.
- Presence (active, gone, back, flapping): presence.py.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from schemas import (
    ChangeKind,
    Event,
    FieldChange,
    HostAnnotated,
    HostChanged,
    HostRecord,
    HostSeen,
    HostUnreachable,
    PortsProbed,
    ProxmoxGuest,
    SweepCompleted,
    normalize_mac,
    port_name,
    site_key,
)

from . import describe
from .ports import ANSWERED, open_results, service_texts, update_rows
from .presence import Presence, PresenceConfig
from .records import STAGE, Folded, HistoryRow, HostEntry, Pending

# The facts: their changes are HostChanged field changes and history rows. Every other
# field of the record is an observation (or a detail that moves with a fact, like vm_id).
FACTS = ("mac", "ip", "ips", "hostname", "vendor", "vm_name", "services", "open_ports", "os_hint",
         "dhcp_type", "dhcp_status", "dhcp_comment", "active", "flapping", *describe.TRACKED)
OBSERVATIONS = ("arp_state", "rtt_ms", "ttl", "last_seen", "last_seen_by")

# Hostname sources from most to least trusted; the name shown is the first one
# known, so two sources that disagree do not make the name flap every sweep.
_HOSTNAME_PRIORITY = ("dns", "dhcp", "lease", "proxmox", *describe.NAME_SOURCES)
_MAX_IPS = 16
IP_STALE_SECS = 300.0      # a known address takes over as `ip` once the current one is this old

@functools.lru_cache(maxsize=65536)
def _mac_key(mac: str) -> str:
    return normalize_mac(mac)


def _entry_for_new(host_key: str, mac: str | None, site: str) -> HostEntry:
    return HostEntry(record=HostRecord(host_key=host_key, mac=mac, site=site), reported_active=False)


def _ip_rank(ip: str) -> int:
    """Which address is the host's `ip`: IPv4 (0), then IPv6 (1), then IPv6 link-local (2)."""
    if ":" not in ip:
        return 0
    return 2 if ip.lower().startswith("fe80:") else 1


class HostBook(Presence):
    """Every known host, folded from facts in event time."""

    def __init__(self, policy: PresenceConfig, entries: Iterable[HostEntry] = ()) -> None:
        self.policy = policy
        self.hosts: dict[str, HostEntry] = {}
        self._by_ip: dict[str, tuple[datetime, str]] = {}   # ip -> (when, owner host_key)
        self._flapping: set[str] = set()
        for entry in entries:
            key, site = entry.record.host_key, entry.record.site
            self.hosts[key] = entry
            for ip, when in entry.ips_at.items():
                self._index_ip(site_key(site, ip), when, key)
            if entry.record.ip and entry.record.ip not in entry.ips_at and entry.record.mac is None:
                self._index_ip(site_key(site, entry.record.ip), entry.record.last_seen or datetime.min, key)
            if entry.reported_active is None:        # written before presence was reported apart
                entry.reported_active = entry.record.active
            if entry.record.flapping:
                self._flapping.add(key)
        self._pending: dict[str, Pending] = {}
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
            elif isinstance(event, HostUnreachable):
                self._unreachable(event)
        return self._finish()

    def _finish(self) -> Folded:
        folded = self._folded
        for key, pending in self._pending.items():
            entry = self.hosts.get(key)
            if entry is None:      # merged away later in the batch
                continue
            self._device_type(entry, pending)
            folded.upserts[key] = entry
            self._report_presence(entry, pending)
            if not pending.changes:
                continue
            rec = entry.record
            if pending.created:
                kind = ChangeKind.NEW
            elif "active" in pending.changes and not rec.flapping and not pending.first_active:
                kind = ChangeKind.BACK if rec.active else ChangeKind.GONE
            else:
                kind = ChangeKind.CHANGED
            assert pending.observed_at is not None
            changes = list(pending.changes.values())
            event = HostChanged(
                host_key=key, observed_at=pending.observed_at, source=STAGE, site=rec.site, kind=kind,
                changes=changes, host=copy.copy(rec), evidence=pending.evidence)
            event.id = _output_id(key, kind, pending)
            folded.changed.append(event)
            folded.contributors[event.id] = pending.inputs
            folded.history.extend(
                HistoryRow(host_key=key, field=c.field, old=c.old, new=c.new, source=pending.source,
                           observed_at=pending.observed_at, event_id=event.id) for c in changes)
        return folded

    # ---------------------------------------------------------------- identity

    def _index_ip(self, ip: str, when: datetime, key: str) -> None:
        current = self._by_ip.get(ip)
        if current is None or when >= current[0] or current[1] not in self.hosts:
            self._by_ip[ip] = (when, key)

    def owner_of_ip(self, ip: str, site: str = "") -> str | None:
        current = self._by_ip.get(site_key(site, ip))
        return current[1] if current and current[1] in self.hosts else None

    def _resolve(self, event: Event, mac: str | None, ip: str | None) -> tuple[HostEntry, Pending]:
        """The entry a fact belongs to (at the fact's site), creating or merging as identity demands."""
        mac = _mac_key(mac) if mac else None     # an event's ip is canonical already (schemas)
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
                pending = self._touch(key, event)
                pending.created = True
                self._change(pending, "mac", None, mac)
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
                pending.evidence = pending_old.evidence
                pending.first_active = pending_old.first_active
                pending.flap_started = pending_old.flap_started
            self._change(pending, "mac", None, mac)
            merged = ip_entry
        else:
            merged = mac_entry
            rec, other = merged.record, ip_entry.record
            if other.first_seen and (rec.first_seen is None or other.first_seen < rec.first_seen):
                rec.first_seen = other.first_seen
            pending = self._touch(key, event)
            if pending_old is not None:
                pending.inputs[:0] = pending_old.inputs
            for ip, when in ip_entry.ips_at.items():
                merged.ips_at[ip] = max(when, merged.ips_at.get(ip, when))
            ips = sorted(merged.ips_at, key=lambda k: merged.ips_at[k], reverse=True)
            self._change(pending, "ips", sorted(rec.ips), sorted(ips))
            rec.ips = ips
            for name, port_row in ip_entry.ports.items():
                merged.ports.setdefault(name, port_row)
            self._ports_stale.add(key)
            for source, name in ip_entry.hostnames.items():
                merged.hostnames.setdefault(source, name)
        for ip in list(merged.ips_at):
            self._index_ip(site_key(merged.record.site, ip), merged.ips_at[ip], key)
        self._folded.ports_dirty.add(key)
        return merged

    def _touch(self, key: str, event: Event) -> Pending:
        pending = self._pending.get(key)
        if pending is None:   # not setdefault: a throwaway Pending per event is ~1/4 of the fold
            pending = self._pending[key] = Pending()
        if event.id and (not pending.inputs or pending.inputs[-1] != event.id):
            pending.inputs.append(event.id)
        if pending.observed_at is None or event.observed_at > pending.observed_at:
            pending.observed_at = event.observed_at
        pending.source = event.source
        pending.event = event
        return pending

    # ------------------------------------------------------------------ fields

    def _change(self, pending: Pending, name: str, old: Any, new: Any) -> None:
        """A fact changed: net over the batch, it is one FieldChange (first old, last new)."""
        if old == new:
            return
        previous = pending.changes.get(name)
        first_old = previous.old if previous is not None else old
        if first_old == new:
            pending.changes.pop(name, None)
        else:
            pending.changes[name] = FieldChange(field=name, old=first_old, new=new)

    def _set(self, entry: HostEntry, pending: Pending, name: str, value: Any, event: Event) -> None:
        """Set a fact if this event is not older than the value it would replace."""
        at = entry.field_at.get(name)
        if at is not None and event.observed_at < at:
            return
        entry.field_at[name] = event.observed_at
        old = getattr(entry.record, name)
        if old != value:
            setattr(entry.record, name, value)
            self._change(pending, name, old, value)

    def _observe(self, entry: HostEntry, name: str, value: Any, event: Event) -> None:
        """Set an observation (same ordering rule as a fact, never a change)."""
        at = entry.field_at.get(name)
        if at is not None and event.observed_at < at:
            return
        entry.field_at[name] = event.observed_at
        setattr(entry.record, name, value)

    def _set_ip(self, entry: HostEntry, ip: str, event: Event, pending: Pending) -> None:
        when = event.observed_at
        ips_at = entry.ips_at
        before = ips_at.get(ip)
        if before is None or when > before:
            ips_at[ip] = when
        rec = entry.record
        ips = rec.ips
        # record.ips is ips_at newest first (kept so by every change of ips_at): an IP that
        # was the newest still is, so the usual re-sighting need not sort and copy the list.
        if not (ips and ips[0] == ip and len(ips) == len(ips_at) <= _MAX_IPS):
            if len(ips_at) > _MAX_IPS:
                oldest = min(ips_at, key=lambda k: ips_at[k])
                del ips_at[oldest]
            new_ips = sorted(ips_at, key=lambda k: ips_at[k], reverse=True)
            if set(new_ips) != set(ips):
                self._change(pending, "ips", sorted(ips), sorted(new_ips))
            rec.ips = new_ips
        self._index_ip(site_key(rec.site, ip), when, rec.host_key)
        current = rec.ip
        if current is not None and current != ip:
            rank, current_rank = _ip_rank(ip), _ip_rank(current)
            seen = ips_at.get(current)
            stale = seen is None or when - seen >= timedelta(seconds=IP_STALE_SECS)
            if rank > current_rank or (rank == current_rank and before is not None and not stale):
                return
        self._set(entry, pending, "ip", ip, event)

    def _stamp(self, entry: HostEntry, event: Event) -> None:
        rec = entry.record
        if rec.first_seen is None or event.observed_at < rec.first_seen:
            rec.first_seen = event.observed_at
        if rec.last_seen is None or event.observed_at > rec.last_seen:
            rec.last_seen = event.observed_at

    def _hostname(self, entry: HostEntry, pending: Pending, source: str, name: str | None,
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
            self._change(pending, "hostname", old, best)

    def _guest(self, entry: HostEntry, pending: Pending, guest: ProxmoxGuest | None,
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
            self._observe(entry, "arp_state", event.neighbour_state, event)
        elif event.alive and event.evidence == "arp-reply":
            self._observe(entry, "arp_state", "reply", event)
        if event.rtt_ms is not None:
            self._observe(entry, "rtt_ms", event.rtt_ms, event)
        if event.ttl is not None:
            self._observe(entry, "ttl", event.ttl, event)
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
        if not any(p.state in ANSWERED for p in event.ports):
            # Nothing answered: the host is away (or filters everything), which says nothing
            # about which ports it has open. Answering on a port is evidence of presence.
            return
        self._stamp(entry, event)
        if entry.ports_at is not None and event.observed_at < entry.ports_at:
            return
        when = entry.ports_at = event.observed_at
        key = entry.record.host_key
        self._folded.ports_dirty.add(key)
        changed = update_rows(entry.ports, event.ports, when)
        if changed or key in self._ports_stale or any(p.os_hint for p in event.ports):
            self._ports_stale.discard(key)
            open_rows = open_results(entry.ports)
            self._set(entry, pending, "open_ports", [port_name(p.protocol, p.port) for p in open_rows], event)
            self._set(entry, pending, "services", service_texts(open_rows), event)
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
        self._evidence(entry, pending, event, "tcp-answer")

    # -------------------------------------------- what hosts say about themselves (issue 23)

    def _facts(self, entry: HostEntry, pending: Pending, facts: dict[str, Any], event: Event) -> None:
        for name, value in facts.items():
            self._set(entry, pending, name, value, event)

    def _device_type(self, entry: HostEntry, pending: Pending) -> None:
        """The device type again when the host's evidence changed: a fact, derived from the
        record as the batch left it (so however the facts were batched, it ends the same)."""
        rec = entry.record
        if pending.event is None or not describe.needs_device_type(rec, pending.created,
                                                                   pending.changes.keys()):
            return
        old, new = rec.device_type, describe.device_type(rec).type
        if old != new:
            rec.device_type = new
            self._change(pending, "device_type", old, new)


def _output_id(key: str, kind: ChangeKind, pending: Pending) -> str:
    """A HostChanged id from the inputs that caused it: a redelivery recomputes the same one."""
    head = f"{STAGE}\0{key}\0{kind.value}\0"
    if pending.inputs:   # one buffer, one hash call: the same bytes as updating piecewise
        return hashlib.blake2b((head + "\0".join(pending.inputs)).encode(), digest_size=16).hexdigest()
    h = hashlib.blake2b(head.encode(), digest_size=16)
    assert pending.observed_at is not None
    h.update(pending.observed_at.isoformat().encode())
    h.update(msgspec.json.encode(sorted(pending.changes)))
    return h.hexdigest()
