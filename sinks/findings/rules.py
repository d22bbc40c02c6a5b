"""Finding rules as data: the rules file's shape, its validation and the port-rule evaluator.

The YAML text is parsed by the I/O module; this module turns the parsed tree
into typed rules (every mistake named with the rule's position and id) and
decides which rules hold for one port.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from schemas import PortResult, PortState, Severity, port_name

Check = Literal["rogue_dhcp", "arp_spoof", "duplicate_ip", "new_in_static_range"]
CHECKS: tuple[str, ...] = ("rogue_dhcp", "arp_spoof", "duplicate_ip", "new_in_static_range")


class PortMatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    ports: list[str] = []
    services: list[str] = []
    products: list[str] = []
    auth_required: bool | None = None
    version_below: str | None = None      # a config key (min_openssh) or a literal version
    tls_expired: bool | None = None
    tls_self_signed: bool | None = None


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    title: str
    severity: Severity
    category: str
    match: PortMatch | None = None
    check: Check | None = None
    enabled: bool = True


class RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[Rule]


class RulesError(ValueError):
    """The rules file is malformed; the message names the rule and the key."""


def parse_rules(tree: Any, source: str) -> list[Rule]:
    """Typed, validated, enabled rules from a parsed YAML tree."""
    try:
        parsed = msgspec.convert(tree, RulesFile)
    except msgspec.ValidationError as exc:
        raise RulesError(f"{source}: {exc}") from None
    seen: set[str] = set()
    for index, rule in enumerate(parsed.rules):
        where = f"{source}: rules[{index}] ({rule.id})"
        if (rule.match is None) == (rule.check is None):
            raise RulesError(f"{where}: give exactly one of `match` or `check`")
        if rule.id in seen:
            raise RulesError(f"{where}: duplicate rule id")
        seen.add(rule.id)
        if rule.match is not None:
            for spec in rule.match.ports:
                if not re.fullmatch(r"(tcp|udp)/\d{1,5}", spec):
                    raise RulesError(f"{where}: port {spec!r} is not like tcp/23")
            # Compared case-insensitively: lower-cased once here, not for every port.
            rule.match.services = [s.lower() for s in rule.match.services]
            rule.match.products = [p.lower() for p in rule.match.products]
    return [r for r in parsed.rules if r.enabled]


class PortRules:
    """The port rules, indexed by what can make them hold (a port name, a service name),
    so a port is judged only by the rules that could match it."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = [r for r in rules if r.match is not None]
        self.ids = {r.id for r in self.rules}
        self._by_port: dict[str, set[int]] = {}
        self._by_service: dict[str, set[int]] = {}
        self._any: set[int] = set()
        for index, rule in enumerate(self.rules):
            assert rule.match is not None
            if not (rule.match.ports or rule.match.services):
                self._any.add(index)
            for name in rule.match.ports:
                self._by_port.setdefault(name, set()).add(index)
            for service in rule.match.services:
                self._by_service.setdefault(service, set()).add(index)

    def candidates(self, ports: list[PortResult]) -> list[Rule]:
        """The rules that may hold for one of these ports, in file order."""
        chosen: set[int] = set()
        for port in ports:
            if port.state != PortState.OPEN:
                continue
            chosen |= self._any
            chosen |= self._by_port.get(port_name(port.protocol, port.port), set())
            if port.service:
                chosen |= self._by_service.get(port.service.lower(), set())
        return [self.rules[i] for i in sorted(chosen)]


_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:p(\d+))?")


@functools.lru_cache(maxsize=4096)   # a LAN has few distinct versions; probes repeat them
def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """(major, minor, patch) from "9.2p1", "OpenSSH_7.4", "8.8"; None when there is no number."""
    if not text:
        return None
    match = _VERSION.search(text)
    if not match:
        return None
    return tuple(int(g) if g else 0 for g in match.groups())


def _ssh_version(port: PortResult) -> str | None:
    if port.version:
        return port.version
    if port.banner:
        match = re.search(r"OpenSSH_([0-9][0-9.p]*)", port.banner)
        if match:
            return match.group(1)
    return None


def port_holds(match: PortMatch, port: PortResult, *, thresholds: dict[str, str], now: datetime,
               expiry_days: int) -> str | None:
    """Evidence text when the rule holds for this port, else None."""
    if port.state != PortState.OPEN:
        return None
    name = port_name(port.protocol, port.port)
    service = (port.service or "").lower()
    if (match.ports or match.services) and not (
            name in match.ports or (service and service in match.services)):
        return None
    evidence = [f"{name} open" + (f" ({port.service})" if port.service else "")]
    if match.products and (port.product or "").lower() not in match.products:
        return None
    if match.auth_required is not None:
        if port.auth_required is None or port.auth_required != match.auth_required:
            return None
        evidence.append("answered without credentials" if not port.auth_required else "asks for credentials")
    if match.version_below is not None:
        limit_text = thresholds.get(match.version_below, match.version_below)
        found, limit = version_tuple(_ssh_version(port)), version_tuple(limit_text)
        if found is None or limit is None or found >= limit:
            return None
        evidence.append(f"{port.product or ''} {_ssh_version(port)} < {limit_text}".strip())
    if match.tls_expired is not None or match.tls_self_signed is not None:
        tls = port.tls
        if tls is None:
            return None
        if match.tls_expired is not None:
            expired = tls.not_after is not None and tls.not_after <= now + timedelta(days=expiry_days)
            if expired != match.tls_expired:
                return None
            evidence.append(f"certificate not after {tls.not_after.isoformat() if tls.not_after else '?'}")
        if match.tls_self_signed is not None:
            if bool(tls.self_signed) != match.tls_self_signed:
                return None
            evidence.append(f"self-signed certificate {tls.subject or ''}".strip())
    if port.banner:
        # Already escaped text (``\\r\\n``, ``\\xNN``): quoted as it is, not repr()'d again.
        evidence.append(f"banner: {port.banner[:120]}")
    return "; ".join(evidence)
