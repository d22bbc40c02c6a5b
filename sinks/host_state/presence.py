"""Presence: when a host is active, gone, back or flapping. Part of the fold; no I/O.

Every rule is decided in event time (``observed_at``), so folding the same facts
again (the journal after a crash, a replay of the streams) decides the same.

- **Evidence** (``HostSeen.alive``, an answered port) makes a host active and
  resets its missed sweeps; evidence older than the last gone decision does not
  bring it back.
- **Missed sweeps.** A ``SweepCompleted`` counts as missed for an active host when
  its ``covered`` addresses hold the host's IP, it started after the host's last
  evidence, and a sweep of that source has seen the host before: an address a
  sweep cannot observe (an ICMP sweep and a host that drops ICMP; the scanner's
  own addresses, which the sweeps leave out of ``covered``) never counts.
- **Confirmation.** After ``missed_sweeps`` misses and ``grace_secs`` since its last
  evidence a host is not gone yet: a sink sends no packets, so host_state asks for
  a direct check (``HostCheckRequested``, answered by the presence_check enricher)
  and says ``gone`` only on the ``HostUnreachable`` that answers the request still
  open, naming what was tried. Any evidence in between cancels the request. A
  request left unanswered is asked again at a miss ``recheck_secs`` later. With
  ``confirm`` false (no presence_check running) the host is gone at once.
- **Flapping.** More than ``flap_transitions`` gone/back transitions within
  ``flap_window_secs`` make a host ``flapping`` (a fact: a change and a history
  row). While it flaps, ``active`` still follows the evidence but a change of it is
  published at most once per window (as a ``changed`` event); after a window without
  transitions it stops flapping, and the presence it settled on is reported
  (``gone``/``back`` if it differs from what was last published).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import msgspec

from lanscope.net.coverage import read_coverage
from lanscope.settings import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from schemas import Event, FieldChange, HostCheckRequested, Protocol, SweepCompleted, site_key

from .ports import open_results
from .records import STAGE, Folded, HostEntry, Pending

_SWEEPS_KEPT = 4          # sweep ids remembered per host: enough for the sweeps in flight
_MAX_TEXT = 255           # evidence and reasons are ShortText on the wire


class PresenceConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """sinks.host_state.presence in config.yaml: when a host is gone, back or flapping (the
    defaults are justified in the README's "Presence")."""

    missed_sweeps: PositiveInt = 2          # a direct check after this many covering sweeps missed it
    grace_secs: NonNegativeFloat = 120.0    # ... and this long since its last evidence
    confirm: bool = True                    # gone only when that check (presence_check) got no
                                            # answer; false: gone at once (without presence_check)
    recheck_secs: PositiveFloat = 60.0      # a check left unanswered is asked again after this
    flap_transitions: NonNegativeInt = 4    # more gone/back transitions than this within ...
    flap_window_secs: PositiveFloat = 3600.0  # ... this window: flapping (0 transitions: never)


class Presence:
    """The presence rules of the host book (fold.HostBook), which supplies these."""

    policy: PresenceConfig
    hosts: dict[str, HostEntry]
    _folded: Folded
    _flapping: set[str]

    def _touch(self, key: str, event: Event) -> Pending:
        raise NotImplementedError

    def _change(self, pending: Pending, name: str, old: object, new: object) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------- evidence

    def _evidence(self, entry: HostEntry, pending: Pending, event: Event,
                  evidence: str | None = None) -> None:
        what = f"{evidence or getattr(event, 'evidence', '') or 'seen'} via {event.source}"
        rec = entry.record
        when = event.observed_at
        previous = rec.last_seen_by.get(event.source)
        if previous is None or when > previous:
            rec.last_seen_by = {**rec.last_seen_by, event.source: when}
        sweep_id = getattr(event, "sweep_id", None)
        if sweep_id and sweep_id not in entry.sweeps_seen:
            entry.sweeps_seen = [*entry.sweeps_seen[1 - _SWEEPS_KEPT:], sweep_id]
        if entry.last_evidence_at is None or when >= entry.last_evidence_at:
            entry.last_evidence_at = when
            entry.last_evidence = what
            entry.missed_sweeps = 0
            entry.check_id = entry.check_at = entry.check_reason = None
        if rec.active or (entry.presence_at is not None and when <= entry.presence_at):
            return
        if entry.ever_active:
            self._transition(entry, pending, event)
        else:
            pending.first_active = True
        self._set_presence(entry, pending, True, when, what)
        entry.ever_active = True

    def _set_presence(self, entry: HostEntry, pending: Pending, active: bool, when: datetime,
                      what: str) -> None:
        entry.record.active = active
        entry.field_at["active"] = when
        entry.presence_at = when
        entry.presence_evidence = pending.evidence = what[:_MAX_TEXT]
        entry.check_id = entry.check_at = entry.check_reason = None

    # ---------------------------------------------------------------- gone

    def _sweep(self, event: SweepCompleted) -> None:
        coverage = read_coverage(event.covered)    # the stage turned it away if unreadable
        self._quiet(event)
        if not coverage:
            return
        policy = self.policy
        start = event.observed_at - timedelta(milliseconds=event.duration_ms)
        grace = timedelta(seconds=policy.grace_secs)
        for entry in list(self.hosts.values()):
            rec = entry.record
            if not rec.active or not rec.ip or rec.site != event.site or rec.ip not in coverage:
                continue                             # a sweep covers its own site's hosts only
            since = entry.last_evidence_at
            if since is not None and since >= start:
                if event.sweep_id in entry.sweeps_seen and event.source not in entry.observable_by:
                    entry.observable_by = [*entry.observable_by, event.source]
                    self._folded.upserts[rec.host_key] = entry
                continue
            if event.source not in entry.observable_by:
                continue                             # this kind of sweep never saw it
            entry.missed_sweeps += 1
            self._folded.upserts[rec.host_key] = entry   # the counter must survive a restart
            if entry.missed_sweeps < policy.missed_sweeps:
                continue
            if since is not None and event.observed_at - since < grace:
                continue
            missed = (f"missed {entry.missed_sweeps} sweeps covering {rec.ip} (last: {event.source} "
                      f"{event.sweep_id}); last evidence: {entry.last_evidence or 'none'} at "
                      f"{since.isoformat() if since else 'never'}")
            if not policy.confirm:
                self._go(entry, self._touch(rec.host_key, event), event, missed)
            elif entry.check_at is None or (event.observed_at - entry.check_at
                                            >= timedelta(seconds=policy.recheck_secs)):
                self._request_check(entry, event, missed)

    def _request_check(self, entry: HostEntry, event: SweepCompleted, reason: str) -> None:
        rec = entry.record
        assert rec.ip is not None
        ports = [p.port for p in open_results(entry.ports) if p.protocol is Protocol.TCP]
        request = HostCheckRequested(host_key=rec.host_key, observed_at=event.observed_at, source=STAGE,
                                     site=rec.site, ip=rec.ip, mac=rec.mac, open_ports=ports[:16],
                                     reason=reason[:_MAX_TEXT])
        cause = event.id or event.observed_at.isoformat()
        request.id = hashlib.blake2b(f"{STAGE}\0check\0{rec.host_key}\0{cause}".encode(),
                                     digest_size=16).hexdigest()
        entry.check_id, entry.check_at, entry.check_reason = request.id, event.observed_at, reason
        self._folded.requests.append(request)
        self._folded.contributors[request.id] = [event.id] if event.id else []
        self._folded.upserts[rec.host_key] = entry

    def _unreachable(self, event: Event) -> None:
        """A HostUnreachable: gone, if it answers the check this host still waits for."""
        entry = self.hosts.get(event.host_key)
        mac = getattr(event, "mac", None)
        if entry is None and mac:
            entry = self.hosts.get(site_key(event.site, mac))
        if entry is None or not entry.record.active or entry.check_id is None \
                or entry.check_id != getattr(event, "request_id", None):
            return
        tried = "; ".join(getattr(event, "tried", [])) or "no probe"
        self._go(entry, self._touch(entry.record.host_key, event), event,
                 f"no answer to {tried}; {entry.check_reason}")

    def _go(self, entry: HostEntry, pending: Pending, event: Event, what: str) -> None:
        self._transition(entry, pending, event)
        self._set_presence(entry, pending, False, event.observed_at, what)

    # ------------------------------------------------------------- flapping

    def _transition(self, entry: HostEntry, pending: Pending, event: Event) -> None:
        """Count a gone/back transition; the one too many within the window starts flapping."""
        rec = entry.record
        when = event.observed_at
        window = timedelta(seconds=self.policy.flap_window_secs)
        if rec.flapping and entry.transitions and when - entry.transitions[-1] >= window:
            self._stop_flapping(entry, pending)
        entry.transitions = [*(t for t in entry.transitions if when - t < window), when]
        limit = self.policy.flap_transitions
        if not rec.flapping and limit > 0 and len(entry.transitions) > limit:
            rec.flapping = True
            entry.field_at["flapping"] = when
            entry.flap_reported_at = when
            pending.flap_started = True
            self._flapping.add(rec.host_key)
            self._change(pending, "flapping", False, True)

    def _stop_flapping(self, entry: HostEntry, pending: Pending) -> None:
        entry.record.flapping = False
        self._flapping.discard(entry.record.host_key)
        self._change(pending, "flapping", True, False)

    def _quiet(self, event: Event) -> None:
        """Hosts flapping with no transition for a whole window stop flapping (the sweeps are
        the clock: they arrive whatever the host does)."""
        window = timedelta(seconds=self.policy.flap_window_secs)
        for key in sorted(self._flapping):
            entry = self.hosts.get(key)
            if entry is None or not entry.record.flapping:
                self._flapping.discard(key)
                continue
            if not entry.transitions or event.observed_at - entry.transitions[-1] >= window:
                pending = self._touch(key, event)
                self._stop_flapping(entry, pending)
                pending.evidence = pending.evidence or (
                    f"no gone/back for {self.policy.flap_window_secs:g} s: no longer flapping")

    def _report_presence(self, entry: HostEntry, pending: Pending) -> None:
        """At the end of a batch: publish ``active`` if it differs from what was published,
        unless the host flaps and its window's report went out already."""
        rec = entry.record
        reported = entry.reported_active
        if reported is None or rec.active == reported:
            entry.reported_active = rec.active
            return
        if rec.flapping and not pending.flap_started and entry.flap_reported_at is not None:
            assert pending.observed_at is not None
            if pending.observed_at - entry.flap_reported_at < timedelta(seconds=self.policy.flap_window_secs):
                return
        pending.changes["active"] = FieldChange(field="active", old=reported, new=rec.active)
        entry.reported_active = rec.active
        if rec.flapping:
            entry.flap_reported_at = pending.observed_at
        if pending.evidence is None:
            pending.evidence = entry.presence_evidence
