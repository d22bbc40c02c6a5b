"""What notify remembers, and what it sends: hosts, open findings, notifications.

``HostFacts`` and ``OpenFinding`` are folded from the events (for filters that a
finding needs its host for, and for the Home Assistant states and counts);
``Note`` is one notification to one target, rendered once, so a resend after a
restart carries exactly what the first attempt did. ``Held`` is an event kept for
a digest (quiet hours, a rate limit, a digest rule). All of them live in the
ledger (ledger.py).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from schemas import Finding, HostChanged


class HostFacts(msgspec.Struct, kw_only=True, omit_defaults=True):
    host_key: str
    mac: str | None = None
    ip: str | None = None
    hostname: str | None = None
    vendor: str | None = None
    device_type: str | None = None        # HostRecord.device_type
    vm_name: str | None = None
    dhcp_type: str | None = None
    os_hint: str | None = None
    open_ports: list[str] = []
    active: bool = False
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    observed_at: datetime | None = None   # the event this was folded from

    @classmethod
    def of(cls, event: HostChanged) -> HostFacts:
        host = event.host
        return cls(host_key=event.host_key, mac=host.mac, ip=host.ip, hostname=host.hostname,
                   vendor=host.vendor, device_type=host.device_type, vm_name=host.vm_name,
                   dhcp_type=host.dhcp_type, os_hint=host.os_hint, open_ports=list(host.open_ports),
                   active=host.active, first_seen=host.first_seen, last_seen=host.last_seen,
                   observed_at=event.observed_at)

    @property
    def name(self) -> str:
        """The best name people know the host by."""
        return self.hostname or self.vm_name or self.ip or self.mac or self.host_key


class OpenFinding(msgspec.Struct, kw_only=True, omit_defaults=True):
    finding_id: str
    rule: str
    severity: str
    title: str
    host_key: str
    ip: str | None = None
    port: int | None = None
    first_seen: datetime | None = None

    @classmethod
    def of(cls, event: Finding) -> OpenFinding:
        return cls(finding_id=event.finding_id, rule=event.rule, severity=event.severity.value,
                   title=event.title, host_key=event.host_key, ip=event.ip, port=event.port,
                   first_seen=event.first_seen)


class Note(msgspec.Struct, kw_only=True):
    """One notification to one target."""

    key: str                              # "<event id>/<target>", or "digest-<hash>/<target>"
    target: str
    rule: str
    kind: str                             # an event kind, or "digest"
    title: str
    text: str
    markdown: str
    events: list[msgspec.Raw]             # the event (one) or a digest's events, as on the bus
    event_ids: list[str]
    subject: str                          # the host key (one event), or the rule (a digest)
    observed_at: datetime                 # the newest event's: how long the key is remembered
    created_at: datetime

    @property
    def event_id(self) -> str:
        """The idempotency key receivers see: the event id, or the digest's key."""
        return self.event_ids[0] if len(self.event_ids) == 1 and not self.key.startswith("digest-") \
            else self.key.rsplit("/", 1)[0]


class Held(msgspec.Struct, kw_only=True):
    """An event kept for a digest to one target."""

    key: str                              # "<event id>/<target>"
    target: str
    rule: str
    kind: str
    title: str                            # the event's own message: a digest's line, or sent
    text: str                             # as it is when it is alone when released
    markdown: str
    when: str
    host: str                             # its label, for the digest's lines
    subject: str                          # the host key
    event: msgspec.Raw
    event_id: str
    observed_at: datetime
    release_at: datetime                  # the digest goes out then (or later, in quiet hours)
    why: str                              # digest | quiet hours | rate limit


__all__ = ["Held", "HostFacts", "Note", "OpenFinding"]
