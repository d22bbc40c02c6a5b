"""What the host book holds and what folding a batch yields: plain data, no logic.

``HostEntry`` is a host record plus what folding needs to remember about it; it
is stored as the ``state`` JSON of the host tables, so every field has a default
(an entry written by an older version loads with the defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from schemas import Event, FieldChange, HostChanged, HostCheckRequested, HostRecord, PortResult

STAGE = "host_state"


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
    # Presence (presence.py): which sweeps can see this host, the check asked for, flapping.
    sweeps_seen: list[str] = []              # ids of the last sweeps that saw it
    observable_by: list[str] = []            # sweep sources that ever saw it: only they can miss it
    check_id: str | None = None              # the HostCheckRequested awaiting its answer
    check_at: datetime | None = None
    check_reason: str | None = None
    presence_evidence: str | None = None     # what the last gone/back was decided on
    transitions: list[datetime] = []         # gone/back times within the flapping window
    reported_active: bool | None = None      # `active` as the last published event said it
    flap_reported_at: datetime | None = None


class HistoryRow(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One published FieldChange: ``event_id`` is the HostChanged that carried it."""

    host_key: str
    field: str
    old: Any
    new: Any
    source: str
    observed_at: datetime
    event_id: str


@dataclass
class Pending:
    """What one host accumulated during one batch."""

    created: bool = False
    evidence: str | None = None
    changes: dict[str, FieldChange] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    observed_at: datetime | None = None
    source: str = ""
    first_active: bool = False               # became active for the first time (not "back")
    flap_started: bool = False
    event: Event | None = None               # the newest fact folded into the host


@dataclass
class Folded:
    """The result of folding one batch."""

    upserts: dict[str, HostEntry] = field(default_factory=dict)
    deletes: dict[str, str] = field(default_factory=dict)     # removed host_key -> merged into
    history: list[HistoryRow] = field(default_factory=list)
    changed: list[HostChanged] = field(default_factory=list)
    requests: list[HostCheckRequested] = field(default_factory=list)
    contributors: dict[str, list[str]] = field(default_factory=dict)  # output id -> input ids
    ports_dirty: set[str] = field(default_factory=set)                # hosts whose ports changed
