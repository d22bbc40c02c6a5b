"""The notify sink's durable ledger: what was decided, what is owed, what went out.

One file of JSON lines, appended and fsync'd. Its first line is a snapshot of the
whole state; each later line is one record:

- ``change``: what one batch (or one digest release) decided, written before the
  batch is acknowledged: the notifications owed (rendered, each keyed by event id
  and target), events held for a digest, the hosts and findings it folded;
- ``sent``: a notification went out (written after the target confirmed it);
- ``dead``: a notification was given up and dead-lettered.

At start the file is replayed: a notification with no ``sent``/``dead`` record is
owed and is sent again, under the same key (a webhook sees the same event id). The
last line cut off by a crash is skipped: a ``change`` cut off was never acknowledged
(its batch comes again), a ``sent`` cut off means that notification goes out once
more. The file is rewritten as one snapshot (atomically: temporary file, fsync,
rename) at start, at a clean stop and when it has grown, dropping the keys of events
too old to come back. A lock file keeps it to one process.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import msgspec

from . import _io
from .model import Held, HostFacts, Note, OpenFinding

log = logging.getLogger(__name__)
COMPACT_MIN_BYTES = 1 << 20      # the file is rewritten once it outgrows this and 4 snapshots
KEEP_SENDS = 1000                # recent sends kept per rule (rate limits)


class State(msgspec.Struct, kw_only=True):
    pending: dict[str, Note] = {}          # owed, oldest first
    done: dict[str, datetime] = {}         # key -> its event's observed_at: sent, dead or dropped
    held: dict[str, Held] = {}             # kept for a digest
    hosts: dict[str, HostFacts] = {}
    findings: dict[str, OpenFinding] = {}  # open ones
    sends: dict[str, list[datetime]] = {}  # rule -> when its recent messages were made


class Snapshot(msgspec.Struct, tag="snapshot"):
    state: State


class Change(msgspec.Struct, tag="change", kw_only=True, omit_defaults=True):
    notes: list[Note] = []
    held: list[Held] = []
    released: list[str] = []               # held keys now carried by a note
    dropped: dict[str, datetime] = {}      # keys decided without a note (quiet hours, drop)
    hosts: list[HostFacts] = []
    opened: list[OpenFinding] = []
    resolved: list[str] = []
    sends: list[tuple[str, datetime]] = []

    def __bool__(self) -> bool:
        return any((self.notes, self.held, self.released, self.dropped, self.hosts, self.opened,
                    self.resolved, self.sends))


class Sent(msgspec.Struct, tag="sent"):
    key: str


class Dead(msgspec.Struct, tag="dead"):
    key: str
    reason: str


Record = Snapshot | Change | Sent | Dead
_decoder = msgspec.json.Decoder(Record)
_encoder = msgspec.json.Encoder()


def apply(state: State, record: Record) -> None:
    if isinstance(record, Snapshot):
        for name in State.__struct_fields__:
            setattr(state, name, getattr(record.state, name))
    elif isinstance(record, Change):
        for held in record.held:
            state.held[held.key] = held
        for note in record.notes:
            if note.key not in state.done:
                state.pending[note.key] = note
        for key in record.released:      # carried by a digest: decided, so a redelivery is nothing
            released = state.held.pop(key, None)
            if released is not None and key not in state.pending:
                state.done[key] = released.observed_at
        state.done.update(record.dropped)
        for host in record.hosts:
            state.hosts[host.host_key] = host
        for finding in record.opened:
            state.findings[finding.finding_id] = finding
        for finding_id in record.resolved:
            state.findings.pop(finding_id, None)
        for rule, at in record.sends:
            state.sends.setdefault(rule, []).append(at)
    elif record.key in state.pending:
        state.done[record.key] = state.pending.pop(record.key).observed_at


class Ledger:
    """The ledger file of one notify process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None
        self._bytes = 0
        self._snapshot_bytes = 0

    async def open(self) -> State:
        """Lock the file and replay it."""
        self._lock_fd = await _io.lock(self._lock_path)
        state = State()
        data = await _io.read_bytes(self.path) or b""
        *lines, torn = data.split(b"\n")
        if torn:
            log.warning("%s: skipping a cut-off last line (%d bytes): a batch never acknowledged "
                        "(it comes again) or a delivery mark (that notification goes out again)",
                        self.path, len(torn))
        for number, line in enumerate(lines, 1):
            try:
                record = _decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _io.StateFileError(f"{self.path}: line {number}: not a notify ledger record ({exc}); "
                                         "move the file away to start afresh (owed notifications "
                                         "in it would be lost)") from None
            apply(state, record)
        self._bytes = len(data) - len(torn)
        return state

    async def append(self, record: Change | Sent | Dead) -> None:
        """Make ``record`` durable (fsync'd once this returns)."""
        line = _encoder.encode(record) + b"\n"
        await _io.append_durable(self.path, line)
        self._bytes += len(line)

    def due(self) -> bool:
        return self._bytes > max(COMPACT_MIN_BYTES, 4 * self._snapshot_bytes)

    async def compact(self, state: State, *, forget_before: datetime) -> None:
        """Rewrite the file as one snapshot of ``state``, without the keys of events observed
        before ``forget_before`` (too old to be notified about if they came again)."""
        state.done = {k: at for k, at in state.done.items() if at >= forget_before}
        for sends in state.sends.values():
            del sends[:-KEEP_SENDS]
        data = _encoder.encode(Snapshot(state)) + b"\n"
        await _io.write_atomic(self.path, data)
        self._bytes = self._snapshot_bytes = len(data)

    def close(self) -> None:
        if self._lock_fd is not None:
            _io.unlock(self._lock_fd)
            self._lock_fd = None


__all__ = ["Change", "Dead", "Ledger", "Record", "Sent", "Snapshot", "State", "apply"]
