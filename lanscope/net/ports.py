"""Port specifications, compatible with nmap's ``-p`` and ``--top-ports``.

    parse_ports("22,80,443")            -> TCP 22, 80, 443
    parse_ports("1-1024") / ("-")       -> a range / all 65535 ports (``-p-``)
    parse_ports("U:53,161,T:21-25,80")  -> UDP 53, 161 and TCP 21-25, 80
    parse_ports("ssh,http")             -> the ports nmap's services file names so
    top_ports(100)                      -> the 100 most often open TCP ports

Like nmap, a number without a ``T:``/``U:`` prefix applies to every protocol
being scanned: TCP alone unless ``udp=True`` is asked for (``-sU``). The ranking
and the names ship with lanscope (``enrichers/port_probe/data/top_ports.json``,
generated from nmap-services; nmap is not needed at run time).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from lanscope.errors import UsageError

MAX_PORT = 65535
_MAX_SPEC = 4096                      # characters; a port spec is never longer in practice
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+*?-]*$")


@dataclass(frozen=True)
class PortSpec:
    """Sorted, de-duplicated TCP and UDP port lists."""

    tcp: tuple[int, ...] = ()
    udp: tuple[int, ...] = ()
    text: str = field(default="", compare=False)

    def __bool__(self) -> bool:
        return bool(self.tcp or self.udp)

    def describe(self) -> list[str]:
        """Compact form for events and reports: ``["tcp:1-1024", "udp:53,161"]``."""
        out = []
        if self.tcp:
            out.append("tcp:" + compress(self.tcp))
        if self.udp:
            out.append("udp:" + compress(self.udp))
        return out


@cache
def _data() -> dict[str, Any]:
    text = resources.files("enrichers.port_probe.data").joinpath("top_ports.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def _names() -> dict[str, dict[str, tuple[int, ...]]]:
    """service name -> {"tcp": ports, "udp": ports}."""
    out: dict[str, dict[str, list[int]]] = {}
    for proto in ("tcp", "udp"):
        for port, name in _data()[f"{proto}_names"].items():
            out.setdefault(name, {}).setdefault(proto, []).append(int(port))
    return {name: {p: tuple(sorted(v)) for p, v in protos.items()} for name, protos in out.items()}


def service_name(port: int, protocol: str = "tcp") -> str | None:
    """The IANA/nmap name of a port (``22`` -> ``ssh``), or None."""
    name: str | None = _data()[f"{protocol}_names"].get(str(port))
    return name


def top_ports(count: int, protocol: str = "tcp") -> tuple[int, ...]:
    """The ``count`` most frequently open ports, most frequent first (nmap's ``--top-ports``)."""
    if count < 1:
        raise UsageError(f"--top-ports: must be at least 1, got {count}")
    ranked: list[int] = _data()[f"{protocol}_ranked"]
    if count <= len(ranked):
        return tuple(ranked[:count])
    # Beyond the surveyed ports, fill up in numeric order (every port is still scanned once).
    seen = set(ranked)
    rest = [p for p in range(1, MAX_PORT + 1) if p not in seen]
    return tuple(ranked + rest[: count - len(ranked)])


def parse_ports(spec: str, *, udp: bool = False, tcp: bool = True) -> PortSpec:
    """Parse an nmap ``-p`` spec; raise UsageError naming the bad part.

    ``tcp``/``udp`` say which protocols unprefixed items apply to (``-sT``/``-sU``).
    """
    text = spec.strip()
    if len(text) > _MAX_SPEC:
        raise UsageError(f"port spec is too long ({len(text)} characters)")
    if not text:
        raise UsageError("empty port spec")
    default = [p for p, on in (("tcp", tcp), ("udp", udp)) if on] or ["tcp"]
    found: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    protos = default
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise UsageError(f"port spec {spec!r}: empty item (two commas in a row?)")
        prefix = re.match(r"^([TUSP]):", item, re.IGNORECASE)
        if prefix:
            letter = prefix.group(1).upper()
            if letter in ("S", "P"):
                raise UsageError(f"port spec {spec!r}: {letter}: (SCTP/IP protocol) is not supported")
            protos = ["tcp"] if letter == "T" else ["udp"]
            item = item[2:].strip()
            if not item:
                raise UsageError(f"port spec {spec!r}: {letter}: needs ports after it")
        for proto in protos:
            found[proto].update(_item(item, proto, spec))
    return PortSpec(tcp=tuple(sorted(found["tcp"])), udp=tuple(sorted(found["udp"])), text=text)


def _item(item: str, proto: str, spec: str) -> set[int]:
    if item == "-":
        return set(range(1, MAX_PORT + 1))
    if re.fullmatch(r"\d*-\d*", item):
        lo_text, hi_text = item.split("-")
        lo = _number(lo_text, spec) if lo_text else 1
        hi = _number(hi_text, spec) if hi_text else MAX_PORT
        if lo > hi:
            raise UsageError(f"port spec {spec!r}: range {item!r} is backwards")
        return set(range(lo, hi + 1))
    if item.isdigit():
        return {_number(item, spec)}
    name = item.lower()
    if not _NAME.match(name):
        raise UsageError(f"port spec {spec!r}: {item!r} is not a port, range or service name")
    if any(c in name for c in "*?"):
        pattern = re.compile("^" + re.escape(name).replace(r"\*", ".*").replace(r"\?", ".") + "$")
        matched = {p for n, protos in _names().items() if pattern.match(n) for p in protos.get(proto, ())}
    else:
        matched = set(_names().get(name, {}).get(proto, ()))
        if not matched and name not in _names():
            raise UsageError(f"port spec {spec!r}: unknown service name {item!r}")
    return matched


def _number(text: str, spec: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_PORT:
        raise UsageError(f"port spec {spec!r}: port {value} is out of range 0-{MAX_PORT}")
    return value


def compress(ports: tuple[int, ...] | list[int]) -> str:
    """``[20, 21, 22, 80]`` -> ``"20-22,80"`` (sorted input expected)."""
    parts: list[str] = []
    ordered = sorted(set(ports))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def resolve(spec: str | None = None, *, top: int = 0, default: str = "20-1024", tcp: bool = True,
            udp: bool = False, udp_default: str = "") -> PortSpec:
    """What a command scans: ``-p SPEC``, else ``--top-ports N``, else the configured default.

    With ``udp`` and no explicit spec, UDP gets ``udp_default`` (enrichers.port_probe.udp) or the top
    UDP ports when ``top`` is given.
    """
    if spec:
        return parse_ports(spec, tcp=tcp, udp=udp)
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()
    if tcp:
        tcp_ports = tuple(sorted(top_ports(top))) if top else (
            parse_ports(default).tcp if default else ())
    if udp:
        udp_ports = tuple(sorted(top_ports(top, "udp"))) if top else (
            parse_ports(udp_default, udp=True, tcp=False).udp if udp_default else ())
    return PortSpec(tcp=tcp_ports, udp=udp_ports, text=spec or (f"top:{top}" if top else default))
