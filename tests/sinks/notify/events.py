"""Events for the notify tests: host changes and findings with ids, as the runtime hands them over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import ChangeKind, FieldChange, Finding, FindingState, HostChanged, HostRecord, Severity

MAC = "dc:a6:32:00:00:02"
IP = "198.18.0.2"


def now(seconds: float = 0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def host(mac: str | None = MAC, ip: str = IP, **fields: Any) -> HostRecord:
    fields.setdefault("active", True)
    return HostRecord(host_key=mac or ip, mac=mac, ip=ip, **fields)


def changed(kind: str = "new", *, mac: str | None = MAC, ip: str = IP, id: str | None = None,
            at: datetime | None = None, changes: tuple[tuple[str, Any, Any], ...] | list[Any] = (),
            **fields: Any) -> HostChanged:
    record = host(mac, ip, **fields)
    when = at or now()
    return HostChanged(id=id or f"hc-{kind}-{record.host_key}-{when.timestamp()}", host_key=record.host_key,
                       observed_at=when, source="host_state", kind=ChangeKind(kind),
                       changes=[FieldChange(field=f, old=o, new=n) for f, o, n in changes], host=record,
                       evidence="arp-reply" if kind in ("new", "back") else None)


def finding(state: str = "opened", *, ip: str = IP, mac: str | None = MAC, rule: str = "ftp-open",
            severity: str = "medium", id: str | None = None, at: datetime | None = None) -> Finding:
    when = at or now()
    return Finding(id=id or f"f-{rule}-{state}-{when.timestamp()}", host_key=mac or ip, observed_at=when,
                   source="findings", finding_id=f"{rule}:{ip}:21", state=FindingState(state), rule=rule,
                   severity=Severity(severity), category="exposure", title="FTP server exposed", ip=ip,
                   mac=mac, port=21, evidence="220 (vsFTPd 3.0.3)", first_seen=when, last_seen=when)
