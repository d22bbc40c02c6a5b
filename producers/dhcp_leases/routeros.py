"""RouterOS REST records -> DhcpLease / ARP rows.

RouterOS sends every value as a JSON string ("true", "1500", "1d2h3m4s",
"never") and omits empty keys entirely (no ``comment``, ``host-name`` or
``active-*`` on a lease that is not bound), so every field here is optional
and parsed from text. Records are attacker-influenced (host names, comments):
text is capped to the schema's ShortText size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from schemas import DhcpLease
from schemas.types import normalize_ip, normalize_mac

MAX_TEXT = 255

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(
    r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?(?:(?P<s>\d+)s)?"
    r"(?:(?P<ms>\d+)ms)?"
    r"(?:(?P<clock>\d{1,2}:\d{2}:\d{2}))?$")


def parse_duration(text: str | None) -> int | None:
    """RouterOS duration -> whole seconds; ``never``/empty -> None; ValueError on garbage.

    Accepts ``1w2d3h4m5s``, ``9m59s``, ``500ms`` (rounded down), ``0s`` and the
    clock forms some versions print (``1d02:03:04``, ``00:05:00``).
    """
    if text is None:
        return None
    value = text.strip().lower()
    if value in ("", "never", "none"):
        return None
    match = _DURATION.match(value)
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"not a RouterOS duration: {text[:40]!r}")
    total = sum(int(match.group(u) or 0) * secs for u, secs in _UNITS.items())
    clock = match.group("clock")
    if clock:
        h, m, s = (int(part) for part in clock.split(":"))
        total += h * 3600 + m * 60 + s
    return total


def parse_bool(text: Any) -> bool | None:
    """``"true"``/``"yes"`` -> True, ``"false"``/``"no"`` -> False, absent -> None."""
    if text is None:
        return None
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    return None


def cap(text: Any, limit: int = MAX_TEXT) -> str | None:
    """Attacker-controlled text as capped data (None when absent or empty)."""
    if text is None:
        return None
    value = str(text)
    return value[:limit] if value else None


def _mac(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    return normalize_mac(value) if value else None


def _ip(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    return normalize_ip(value) if value else None


def _duration_field(record: dict[str, Any], key: str, problems: list[str]) -> int | None:
    try:
        return parse_duration(record.get(key))
    except ValueError as exc:
        problems.append(f"{key}: {exc}")
        return None


def lease_from_record(record: dict[str, Any], gateway: str) -> tuple[DhcpLease, list[str]]:
    """One ``/ip/dhcp-server/lease`` record -> (lease, problems with single fields).

    Raises ValueError when the record is unusable (not an object, no address and no MAC).
    A bad single field (an odd duration) is reported in ``problems`` and left None.
    """
    if not isinstance(record, dict):
        raise ValueError(f"lease record is a {type(record).__name__}, not an object")
    problems: list[str] = []
    address = _ip(record, "address")
    mac = _mac(record, "mac-address")
    if address is None and mac is None:
        raise ValueError("lease record has neither address nor mac-address")
    dynamic = parse_bool(record.get("dynamic"))
    lease = DhcpLease(
        address=address,
        mac=mac,
        client_id=cap(record.get("client-id") or record.get("active-client-id")),
        hostname=cap(record.get("host-name")),
        dynamic=dynamic,
        status=cap(record.get("status")),
        expires_after_secs=_duration_field(record, "expires-after", problems),
        last_seen_secs=_duration_field(record, "last-seen", problems),
        server=cap(record.get("server") or record.get("active-server")),
        comment=cap(record.get("comment")),
        disabled=parse_bool(record.get("disabled")),
        blocked=parse_bool(record.get("blocked")),
        active_address=_ip(record, "active-address"),
        active_mac=_mac(record, "active-mac-address"),
        gateway=cap(gateway),
        origin="mikrotik",
    )
    return lease, problems


def lease_type(lease: DhcpLease) -> str | None:
    """``static`` / ``dynamic`` as the host record shows it."""
    if lease.dynamic is None:
        return None
    return "dynamic" if lease.dynamic else "static"


# ARP states that prove the router heard from the host recently. ``stale`` is a
# record without fresh evidence (like a STALE kernel neighbour): reported with
# alive=False so the host is known but not counted as present. ``failed`` and
# ``incomplete`` rows carry no MAC worth reporting and are dropped.
ARP_ALIVE = frozenset({"reachable", "permanent", "delay", "probe"})
ARP_KNOWN = ARP_ALIVE | {"stale"}


@dataclass(frozen=True)
class RouterArp:
    address: str
    mac: str
    interface: str | None
    status: str
    alive: bool
    dhcp: bool | None
    dynamic: bool | None
    comment: str | None
    gateway: str


def arp_from_record(record: dict[str, Any], gateway: str) -> RouterArp | None:
    """One ``/ip/arp`` record -> RouterArp, or None for a row that says nothing (failed,
    incomplete, disabled, invalid, no MAC). Raises ValueError on a malformed address."""
    if not isinstance(record, dict):
        raise ValueError(f"ARP record is a {type(record).__name__}, not an object")
    if not record.get("mac-address") or not record.get("address"):
        return None
    if parse_bool(record.get("disabled")) or parse_bool(record.get("invalid")):
        return None
    status = str(record.get("status") or "").lower()
    if not status:
        # Older releases print no status: a complete entry is a live one.
        status = "complete" if parse_bool(record.get("complete")) else ""
    if status not in ARP_KNOWN and status != "complete":
        return None
    mac = normalize_mac(str(record["mac-address"]))
    if mac == "00:00:00:00:00:00":
        return None
    # The key is upper-case "DHCP" in RouterOS 7 captures; accept either spelling.
    dhcp = parse_bool(record.get("DHCP", record.get("dhcp")))
    return RouterArp(
        address=normalize_ip(str(record["address"])),
        mac=mac,
        interface=cap(record.get("interface")),
        status=status,
        alive=status != "stale",
        dhcp=dhcp,
        dynamic=parse_bool(record.get("dynamic")),
        comment=cap(record.get("comment")),
        gateway=gateway,
    )
