"""Constrained scalar types shared by every event.

msgspec has no ipaddress or MAC type, so addresses travel as strings whose
shape is pinned by a pattern (it shows up in the exported JSON Schema).
Producers normalise before they publish: IPs in ``ipaddress`` canonical form,
MACs lower-case colon form.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Annotated

import msgspec

# Lower-case colon form, e.g. "bc:24:11:2a:3b:4c".
Mac = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")]
# Canonical IPv4 or IPv6 text. The pattern rejects obvious garbage early (and shows in
# the JSON Schema); the events' __post_init__ parses the rest (canonical_ip).
Ip = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f:.]{2,45}$", max_length=45)]
# A network as "address/prefix" (e.g. "198.18.0.0/24", "fd00:1a5::/120"); like Ip, the
# pattern only rejects obvious garbage: lanscope.net.coverage reads and writes them.
Cidr = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$", max_length=49)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Ttl = Annotated[int, msgspec.Meta(ge=0, le=255)]
# 0..10 like nmap's service "conf".
Confidence = Annotated[int, msgspec.Meta(ge=0, le=10)]
# Attacker-controlled text (banners, hostnames, lease comments) is capped.
ShortText = Annotated[str, msgspec.Meta(max_length=255)]
LongText = Annotated[str, msgspec.Meta(max_length=4096)]
# The first subject token after "lanscope" of every entity: a site may not be named like one.
ENTITIES = frozenset({"host", "sweep", "finding", "registry", "dlq", "query"})
# Where an event was observed: a site id (a subject token: lower-case letters, digits, '-' and
# '_', at most 32, not an entity's name), or "" for the default site (a single-site install).
# Checked where an event is decoded, like every other field. See check_site(), site_key().
Site = Annotated[str, msgspec.Meta(
    pattern=rf"^(?!(?:{'|'.join(sorted(ENTITIES))})$)([a-z0-9][a-z0-9_-]{{0,31}})?$")]
# Ids and keys (event ids, host keys, finding and registry ids): capped like the text.
Key = Annotated[str, msgspec.Meta(max_length=512)]


class PortState(enum.StrEnum):
    """nmap's six port states."""

    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    UNFILTERED = "unfiltered"
    OPEN_FILTERED = "open|filtered"
    CLOSED_FILTERED = "closed|filtered"


class Protocol(enum.StrEnum):
    TCP = "tcp"
    UDP = "udp"


class ChangeKind(enum.StrEnum):
    NEW = "new"
    CHANGED = "changed"
    GONE = "gone"
    BACK = "back"


class FindingState(enum.StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"


class Severity(enum.StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")    # a MAC as normalize_mac writes it


def normalize_mac(value: str) -> str:
    """Return ``value`` in lower-case colon form; raise ValueError if it is not a MAC.

    Accepts ``AA:BB:CC:DD:EE:FF``, ``aa-bb-cc-dd-ee-ff``, ``aabb.ccdd.eeff`` and
    ``aabbccddeeff``, and RouterOS/dnsmasq forms without zero padding
    (``0:0:5e:0:53:1``).
    """
    if CANONICAL_MAC.fullmatch(value):  # the common case on a hot path (host_state)
        return value
    text = value.strip().lower()
    if ":" in text or "-" in text:
        parts = text.replace("-", ":").split(":")
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            raise ValueError(f"not a MAC address: {value!r}")
        digits = "".join(p.zfill(2) for p in parts)
    else:
        digits = text.replace(".", "")
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a MAC address: {value!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalize_ip(value: str) -> str:
    """Return the canonical text of an IPv4/IPv6 address; raise ValueError otherwise."""
    return str(ipaddress.ip_address(value.strip()))


_SITE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def check_site(site: str) -> str:
    """``site`` if it can name a site (the default site is ""); ValueError saying why not."""
    if site and (not _SITE.fullmatch(site) or site in ENTITIES):
        raise ValueError(f"{site!r} cannot name a site: use 1-32 lower-case letters, digits, "
                         f"'-' and '_', starting with a letter or digit, and none of "
                         f"{', '.join(sorted(ENTITIES))}")
    return site


def site_key(site: str, key: str) -> str:
    """A host's identity at its site: ``paris/aa:bb:cc:dd:ee:ff``; the default site's hosts
    keep their bare MAC or IP, so a single-site install keys its hosts as before. The same
    private range (or a cloned MAC) at two sites stays two hosts."""
    return f"{site}/{key}" if site else key


def site_of_key(key: str) -> str:
    """The site of a site_key() (``""`` for a bare MAC or IP: neither holds a '/')."""
    site, slash, _ = key.partition("/")
    return site if slash else ""


# Addresses repeat: every sighting of a host carries the same text. Remembered (each text
# seen -> its canonical text, and each canonical text -> itself), checking one costs a dict
# lookup (~0.05 us) instead of ipaddress's parse (~1-2 us).
_CANONICAL_IPS: dict[str, str] = {}
_CANONICAL_IPS_MAX = 1 << 16


def canonical_ip(value: str, field: str = "ip") -> str:
    """The canonical text of an IP address (as ``normalize_ip``), remembered; ValueError
    naming ``field`` and the value when it is not one. What the events check addresses with."""
    known = _CANONICAL_IPS.get(value)
    if known is not None:
        return known
    try:
        text = str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{field}: {value[:60]!r} is not an IP address") from None
    if len(_CANONICAL_IPS) >= _CANONICAL_IPS_MAX:
        _CANONICAL_IPS.clear()
    _CANONICAL_IPS[value] = _CANONICAL_IPS[text] = text
    return text


def check_cidrs(cidrs: list[str], field: str = "covered") -> None:
    """ValueError naming the first entry that is not ``address/prefix`` without host bits
    (the same rule as lanscope.net.coverage.read_coverage)."""
    for index, text in enumerate(cidrs):
        try:
            if "/" not in text:
                raise ValueError("no /prefix")
            ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"{field}[{index}] {text[:60]!r} is not a CIDR: {exc}") from None


def host_key(mac: str | None, ip: str | None) -> str:
    """The identity of a host on the bus: its MAC when known, else its IP."""
    if mac:
        return normalize_mac(mac)
    if ip:
        return normalize_ip(ip)
    raise ValueError("a host needs a MAC or an IP")
