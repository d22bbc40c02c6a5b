"""Scope safety: which targets lanscope may send packets to.

The default policy (design.md "Safety"):

* private ranges directly attached to the machine's interfaces, or listed in
  ``scope.allow``, may be scanned;
* another private range (RFC 1918, CGNAT, ULA, link-local, loopback) needs
  ``scope.allow`` or ``--force``;
* anything else is "public" and needs ``--allow-public`` (or
  ``scope.allow_public``). Benchmarking (198.18.0.0/15), documentation and
  other special ranges are *not* private here: the lab's 198.18.0.0/15 is
  scannable only because it is attached to the scanner namespace's bridge;
* more than ``scope.max_addresses`` addresses needs ``--force``;
* more than ``MAX_ADDRESSES`` (2**24: an IPv4 /8, an IPv6 /104) is refused even with
  ``--force``: the addresses are enumerated one by one, and an IPv6 /64 (2**64) would
  never end. Sizes are counted without enumerating (``Targets.count``).

``check_scope`` runs before the first packet and raises ScopeError naming the
flag or config key that would allow the refused targets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from lanscope.errors import ScopeError, UsageError
from lanscope.net.targets import IPNetwork, Targets, parse_targets
from lanscope.settings import ScopeConfig

# Ranges that are "private" for scope purposes: nobody else's network.
PRIVATE_RANGES: tuple[str, ...] = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",   # RFC 1918
    "100.64.0.0/10",                                   # RFC 6598 shared address space (CGNAT)
    "169.254.0.0/16", "127.0.0.0/8",                   # link-local, loopback
    "fc00::/7", "fe80::/10", "::1/128",                # ULA, link-local, loopback
)
_PRIVATE = parse_targets(PRIVATE_RANGES)
MAX_ADDRESSES = 2**24


def _no_resolve(name: str) -> list[str]:
    raise UsageError(f"scope.allow: {name!r}: hostnames are not allowed in scope, use addresses")


def _describe(targets: Targets) -> str:
    first = targets.first()
    more = targets.count - 1
    return f"{first}" + (f" (and {more} more)" if more > 0 else "")


def allowed_targets(scope: ScopeConfig, attached: Iterable[IPNetwork]) -> Targets:
    """The addresses the scope allows without any flag."""
    specs = [str(n) for n in attached] if scope.attached else []
    try:
        return parse_targets([*specs, *scope.allow], resolve=_no_resolve)
    except UsageError as exc:
        raise UsageError(f"scope.allow: {exc}") from None


def check_scope(targets: Targets, scope: ScopeConfig, *, attached: Iterable[IPNetwork],
                allow_public: bool = False, force: bool = False) -> None:
    """Raise ScopeError if any target is out of scope; say what would allow it."""
    check_size(targets)
    count = targets.count
    if count > scope.max_addresses and not force:
        raise ScopeError(f"{' '.join(targets.specs)} is {count:,} addresses, more than scope.max_addresses "
                         f"({scope.max_addresses:,}); pass --force to scan them all (at most "
                         f"{MAX_ADDRESSES:,}), or name a smaller range")
    outside = targets.minus(allowed_targets(scope, list(attached)))
    if not outside:
        return
    public = outside.minus(_PRIVATE)
    if public and not (allow_public or scope.allow_public):
        raise ScopeError(f"{_describe(public)} is not a private address attached to this machine; "
                         "pass --allow-public to scan public addresses, or add it to scope.allow")
    private = outside.minus(public)
    if private and not force:
        raise ScopeError(f"{_describe(private)} is private but not attached to this machine's "
                         "interfaces; add it to scope.allow in the config, or pass --force")


def check_size(targets: Targets) -> None:
    """Refuse targets too large to enumerate in reasonable time, flag or not."""
    count = targets.count
    if count <= MAX_ADDRESSES:
        return
    hint = (" (IPv6 subnets are too large to sweep: name the hosts' addresses, e.g. from "
            "`lanscope arp` or the neighbour table, or a /104 or smaller)"
            if targets.ipv6_count > MAX_ADDRESSES else "")
    raise ScopeError(f"{' '.join(targets.specs)} is {count:,} addresses: lanscope goes through at most "
                     f"{MAX_ADDRESSES:,} (an IPv4 /8, an IPv6 /104) per command, even with --force; "
                     f"split it into smaller ranges{hint}")


def is_private(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Private in the scope sense (RFC 1918, CGNAT, ULA, link-local, loopback)."""
    return address in _PRIVATE


def scope_refusal(ip: str, scope: ScopeConfig, *, attached: Iterable[IPNetwork]) -> str | None:
    """Why one address may not be probed under ``scope`` with no flag given, or None if it may.

    What a stage asked by an event (not a person at a command line) checks: no --force,
    no --allow-public beyond ``scope.allow_public``."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    try:
        if scope.exclude and address in parse_targets(scope.exclude, resolve=_no_resolve):
            return f"{address} is excluded by scope.exclude"
        check_scope(parse_targets([str(address)]), scope, attached=attached)
    except (ScopeError, UsageError) as exc:
        # The flags the message suggests are the command line's; here only the config helps.
        return str(exc).split("; ", 1)[0] + " (scope.allow would allow it)"
    return None


def scope_check(scope: ScopeConfig) -> Callable[[str], str | None]:
    """scope_refusal against the networks attached right now (stages that probe on request)."""
    from lanscope.net.interfaces import attached_private_networks

    def refusal(ip: str) -> str | None:
        return scope_refusal(ip, scope, attached=attached_private_networks())

    return refusal
