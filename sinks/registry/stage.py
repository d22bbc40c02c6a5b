"""The ``registry`` sink: keep a host inventory in step with what the LAN shows.

- ``register``: every new host gets an entry (keyed by its host_key); hosts that
  match an existing entry update it as in sync mode.
- ``sync``: only entries that already exist are updated, matched by IP,
  internal IP or hostname (a multi-NIC host with a public and an internal IP
  matches on either). Updated: services, OS hint, last seen (and a missing
  MAC). Never touched: the fields people own (owner, notes, hostname, IPs of
  an existing entry).

Entries live in a local JSON state file, seeded and refreshed at ``open()`` from
a user-editable inventory (YAML or CSV; see README.md). A batch appends what it
changed to a journal beside it (``<state_file>.journal``, one JSON line per batch)
instead of rewriting every entry; the journal is folded into the state file once it
outgrows it, at ``open()`` and at ``close()``. Every created or
updated entry is returned as a ``RegistryEntry`` event, which the host_state
sink stores in DuckDB's ``registry`` table. Recent inputs' outputs are kept
(an outbox) so a redelivered input returns the same events.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, PositiveInt
from schemas import ChangeKind, Event, HostChanged, RegistryEntry, site_key
from sinks._inventory import short_name
from sinks._outbox import apply_batch, trim

from . import _io

log = logging.getLogger(__name__)
STAGE = "registry"
# The journal is folded into the state file once it is larger than that file and this.
JOURNAL_MIN_BYTES = 1 << 20


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """sinks.registry in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    mode: Literal["register", "sync"] = "register"  # register: new hosts get an entry;
                                                    # sync: update existing entries only
    inventory: str = ""                   # YAML/CSV inventory that seeds the entries; empty: none
    state_file: str = ""                  # empty: <data_dir>/registry.json
    batch_size: PositiveInt = 500         # events per commit when behind
    flush_ms: NonNegativeInt = 200        # a batch waits this long to fill up


class Entry(msgspec.Struct, kw_only=True):
    entry_id: str
    site: str = ""                        # the site of its hosts ("": the default site)
    ip: str | None = None
    internal_ip: str | None = None
    hostname: str | None = None
    mac: str | None = None
    os_hint: str | None = None
    services: list[str] = []
    owner: str | None = None              # people's fields: never written by discovery
    notes: str | None = None
    last_seen: datetime | None = None
    updated_from: datetime | None = None  # observed_at of the newest fact applied


class _State(msgspec.Struct, kw_only=True):
    entries: dict[str, Entry] = {}
    outbox: dict[str, list[RegistryEntry]] = {}
    generation: int = 0     # only the journal of the same generation continues this file


class _JournalHeader(msgspec.Struct, forbid_unknown_fields=True):
    """The journal's first line: the state file generation its batches follow."""

    generation: int


class _Delta(msgspec.Struct, kw_only=True):
    """A journal line: the entries one batch changed (whole) and its inputs' outputs."""

    entries: list[Entry] = []
    outbox: dict[str, list[RegistryEntry]] = {}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Sink: register new hosts or sync existing inventory entries."""

    def __init__(self, config: Config, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        self.state = _State()
        self._path = Path(config.state_file)
        self._journal = self._path.with_name(self._path.name + ".journal")
        self._base_bytes = 0       # the state file's size
        self._journal_bytes = 0    # the journal's size; 0: the next batch starts a new one
        self._touched: set[str] = set()   # entries changed since they were last written
        self._behind = False       # a write failed: memory is ahead of the files until a rewrite
        # Lookups for match(): one dict probe per key instead of a scan of every entry
        # per event (a sweep of n new hosts was O(n^2)). Values: entry ids.
        self._order: dict[str, int] = {}
        self._by_ip: dict[str, set[str]] = {}
        self._by_name: dict[str, set[str]] = {}
        self._by_mac: dict[str, set[str]] = {}

    async def open(self) -> None:
        raw = await _io.read_bytes(self._path)
        if raw:
            try:
                self.state = msgspec.json.decode(raw, type=_State)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _io.InventoryError(f"{self._path}: not a registry state file ({exc})") from None
        self._base_bytes = len(raw or b"")
        self._journal_bytes = 0
        replayed = self._replay(await _io.read_bytes(self._journal) or b"")
        if self.config.inventory:
            rows = await _io.read_inventory(Path(self.config.inventory))
            self._import(rows)
        if replayed or self.config.inventory:
            await self._save()
        self._reindex()
        log.info("registry: %d entries (%s mode)", len(self.state.entries), self.config.mode)

    async def close(self) -> None:
        if self._journal_bytes:     # a clean stop leaves the state in one file
            await self._save()

    def _import(self, rows: list[dict[str, Any]]) -> None:
        """Inventory rows are the people's word: their fields overwrite the stored ones."""
        for number, row in enumerate(rows, 1):
            entry_id = str(row.get("id") or row.get("entry_id") or row.get("hostname") or row.get("ip") or "")
            if not entry_id:
                raise _io.InventoryError(f"{self.config.inventory}: entry {number} has no id, "
                                         "hostname or ip")
            entry = self.state.entries.get(entry_id) or Entry(entry_id=entry_id)
            for name in ("site", "ip", "internal_ip", "hostname", "mac", "owner", "notes"):
                if row.get(name) not in (None, ""):
                    setattr(entry, name, str(row[name])[:4096 if name == "notes" else 255])
            self.state.entries[entry_id] = entry

    def _reindex(self) -> None:
        self._order, self._by_ip, self._by_name, self._by_mac = {}, {}, {}, {}
        for entry in self.state.entries.values():
            self._index(entry)

    def _index(self, entry: Entry) -> None:
        """Add an entry's current keys (keys are only ever added between reindexes)."""
        self._order.setdefault(entry.entry_id, len(self._order))
        site = entry.site      # an entry matches hosts of its own site only
        for ip in (entry.ip, entry.internal_ip):
            if ip:
                self._by_ip.setdefault(site_key(site, ip), set()).add(entry.entry_id)
        if entry.hostname:
            self._by_name.setdefault(site_key(site, short_name(entry.hostname)), set()).add(entry.entry_id)
        if entry.mac:
            self._by_mac.setdefault(site_key(site, entry.mac), set()).add(entry.entry_id)

    def _entries(self, ids: set[str]) -> list[Entry]:
        """The entries in the order they were created (the order a scan would find them)."""
        return [self.state.entries[i] for i in sorted(ids, key=self._order.__getitem__)]

    def _replay(self, data: bytes) -> bool:
        """Apply the journal's batches if it continues the state file; True if it had any.

        A last line without its newline is an append cut short by a crash: that batch
        was never acknowledged (it comes again), so it is skipped."""
        *lines, torn = data.split(b"\n")
        if torn:
            log.warning("%s: skipping a cut-off last line (%d bytes): its batch was not "
                        "acknowledged and will be delivered again", self._journal, len(torn))
        if not lines:
            return bool(torn)
        try:
            header = msgspec.json.decode(lines[0], type=_JournalHeader)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise _io.InventoryError(f"{self._journal}: line 1: not a registry journal header "
                                     f"({exc}); move the file away to start from {self._path}") from None
        if header.generation != self.state.generation:
            return bool(torn)   # written before the state file was last rewritten: in it already
        for number, line in enumerate(lines[1:], 2):
            try:
                delta = msgspec.json.decode(line, type=_Delta)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _io.InventoryError(f"{self._journal}: line {number}: not a registry journal "
                                         f"line ({exc})") from None
            for entry in delta.entries:
                self.state.entries[entry.entry_id] = entry
            self.state.outbox.update(delta.outbox)
        trim(self.state.outbox)
        return True

    async def _save(self) -> None:
        """Rewrite the state file whole and drop the journal folded into it (a crash in
        between leaves a journal of the previous generation, ignored at open)."""
        self.state.generation += 1
        data = msgspec.json.encode(self.state)
        await _io.write_atomic(self._path, data)
        await _io.remove(self._journal)
        self._base_bytes = len(data)
        self._journal_bytes = 0
        self._touched.clear()

    async def _persist(self, batch: list[Event]) -> None:
        """Make what this batch changed durable: a journal line, or the whole file when due."""
        delta = _Delta(entries=[self.state.entries[i] for i in sorted(self._touched)],
                       outbox={e.id: self.state.outbox[e.id] for e in batch
                               if e.id and e.id in self.state.outbox})
        line = msgspec.json.encode(delta) + b"\n"
        behind, self._behind = self._behind, True
        if behind or self._journal_bytes + len(line) > max(JOURNAL_MIN_BYTES, self._base_bytes):
            await self._save()
        elif self._journal_bytes == 0:
            # A new journal replaces any old one whole: its lines are in the state file.
            data = msgspec.json.encode(_JournalHeader(self.state.generation)) + b"\n" + line
            await _io.write_atomic(self._journal, data)
            self._journal_bytes = len(data)
        else:
            await _io.append_durable(self._journal, line)
            self._journal_bytes += len(line)
        self._touched.clear()
        self._behind = False

    # ------------------------------------------------------------------ batch

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        # Every input is looked up in the outbox anyway (it is in memory): `redelivered` is not needed.
        outputs, changed = apply_batch(
            batch, self.state.outbox,
            lambda event: self._handle(event) if isinstance(event, HostChanged) else [])
        if changed or self._behind:   # behind: the redelivery of a batch whose write failed
            trim(self.state.outbox)
            await self._persist(batch)
        return list(outputs.values())

    def match(self, event: HostChanged) -> list[Entry]:
        """Existing entries of this host's site: by IP or internal IP (any of its IPs), else
        hostname, else MAC."""
        host = event.host
        site = host.site
        found: set[str] = set()
        for ip in (host.ip, *host.ips):
            ids = self._by_ip.get(site_key(site, ip)) if ip else None
            if ids:
                found |= ids
        if not found and host.hostname:
            found = self._by_name.get(site_key(site, short_name(host.hostname)), found)
        if not found and host.mac:
            found = self._by_mac.get(site_key(site, host.mac), found)
        return self._entries(found) if found else []

    def _handle(self, event: HostChanged) -> list[RegistryEntry]:
        if event.kind is ChangeKind.GONE:
            return []
        host = event.host
        entries = self.match(event)
        out: list[RegistryEntry] = []
        if not entries:
            if self.config.mode != "register" or event.kind is not ChangeKind.NEW:
                return []
            entry = Entry(entry_id=host.host_key, site=host.site, ip=host.ip, hostname=host.hostname,
                          mac=host.mac,
                          os_hint=host.os_hint, services=list(host.services),
                          last_seen=host.last_seen or event.observed_at, updated_from=event.observed_at)
            self.state.entries[entry.entry_id] = entry
            self._index(entry)
            self._touched.add(entry.entry_id)
            return [self._event(entry, "created", event)]
        for entry in entries:
            if entry.updated_from is not None and event.observed_at < entry.updated_from:
                continue         # an older change than one already applied
            before = (entry.os_hint, list(entry.services), entry.last_seen, entry.mac)
            entry.services = list(host.services)
            entry.os_hint = host.os_hint or entry.os_hint
            seen = host.last_seen or event.observed_at
            entry.last_seen = max(seen, entry.last_seen) if entry.last_seen else seen
            mac = entry.mac or host.mac
            if mac != entry.mac:
                entry.mac = mac
                self._index(entry)
            entry.updated_from = event.observed_at
            self._touched.add(entry.entry_id)
            if (entry.os_hint, entry.services, entry.last_seen, entry.mac) != before:
                out.append(self._event(entry, "updated", event))
        return out

    @staticmethod
    def _event(entry: Entry, action: str, cause: HostChanged) -> RegistryEntry:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{STAGE}\0{entry.entry_id}\0{action}\0{cause.id or cause.observed_at.isoformat()}".encode())
        return RegistryEntry(
            id=h.hexdigest(), host_key=cause.host_key, observed_at=cause.observed_at, source=STAGE,
            site=entry.site, entry_id=entry.entry_id, action=action, ip=entry.ip,
            internal_ip=entry.internal_ip, hostname=entry.hostname, mac=entry.mac, os_hint=entry.os_hint,
            services=entry.services, owner=entry.owner, notes=entry.notes, last_seen=entry.last_seen)


def build(config: Config, ctx: StageContext) -> Registry:
    state_file = config.state_file or str(ctx.data_dir / "registry.json")
    return Registry(msgspec.structs.replace(config, state_file=state_file))


__all__ = ["Config", "Entry", "Registry", "build"]
