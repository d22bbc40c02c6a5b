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
flag or config key that would allow the refused targets. ``ScopeGuard`` applies
the same rules to the addresses events name, in every stage that sends packets
because of an event (without flags: only the config can widen the scope).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Protocol

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


# ----------------------------------------------------------------------- stages

AttachedNetworks = Callable[[], Iterable[IPNetwork]]
_MAX_ANSWERS = 65536


def _lan_networks() -> list[IPNetwork]:
    """The attached networks an event may name: loopback is this machine, not the LAN.
    Every guard reads them every refresh_secs, on the event loop: addresses only, no
    ethtool ioctl per interface for a driver name nobody looks at."""
    from lanscope.net.interfaces import attached_private_networks, interfaces

    return [n for n in attached_private_networks(interfaces(drivers=False)) if not n.is_loopback]


class Guard(Protocol):
    """What a stage needs of the scope check (ScopeGuard); tests pass their own."""

    def refusal(self, address: str) -> str | None: ...


class ScopeGuard:
    """The scope rules for one address at a time, for every stage that sends packets because
    of an event (port_probe, dns_names, presence checks ...): an event is not a licence to
    scan. The rules are check_scope's, as a pipeline without flags applies them:

    * an address in ``scope.exclude`` is refused;
    * an address of a private network attached to one of this machine's interfaces
      (``scope.attached``; loopback does not count: 127.0.0.1 in an event is refused
      unless ``scope.allow`` names it), or in ``scope.allow``, is allowed, except the
      network and broadcast addresses of those networks;
    * a public address needs ``scope.allow_public``; another private address needs
      ``scope.allow`` (there is no --force for events);
    * multicast and unspecified addresses are never allowed.

    ``granted``: targets a one-shot command already checked with its flags
    (StageContext.sweep); they are allowed as the command allowed them, exclusions aside.
    Attached networks are read again every ``refresh_secs`` (interfaces come and go);
    answers are remembered until then, so a check costs a dict lookup.
    """

    def __init__(self, scope: ScopeConfig, *, granted: Targets | None = None,
                 attached: AttachedNetworks = _lan_networks, refresh_secs: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scope = scope
        self.granted = granted
        self._attached = attached
        self._refresh_secs = refresh_secs
        self._clock = clock
        self._excluded = parse_targets(scope.exclude, resolve=_no_resolve) if scope.exclude else None
        self._allowed: Targets | None = None
        self._never: set[int] = set()
        self._read_at = -float("inf")
        self._answers: dict[str, str | None] = {}

    def _refresh(self) -> None:
        now = self._clock()
        if now - self._read_at < self._refresh_secs:
            return
        networks = list(self._attached())
        self._allowed = allowed_targets(self.scope, networks)
        self._never = self._allowed.never_send4(networks)
        self._answers = {}
        self._read_at = now

    def refusal(self, address: str) -> str | None:
        """None if a packet may go to ``address``; else why not, naming the key that would allow it."""
        self._refresh()
        answer = self._answers.get(address, "")
        if answer == "":
            if len(self._answers) >= _MAX_ANSWERS:      # events name any address they like
                self._answers.clear()
            answer = self._answers[address] = self._judge(address)
        return answer

    def _judge(self, text: str) -> str | None:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return f"{text[:60]!r} is not an IP address"
        if address.is_multicast or address.is_unspecified:
            return f"{address} is a multicast or unspecified address: never probed"
        if self._excluded is not None and address in self._excluded:
            return f"{address} is out of scope: scope.exclude names it"
        if self.granted is not None and address in self.granted:
            return None
        assert self._allowed is not None
        if address in self._allowed:
            if address.version == 4 and int(address) in self._never:
                return f"{address} is the network or broadcast address of an attached subnet: never probed"
            return None
        if not is_private(address):
            if self.scope.allow_public:
                return None
            return (f"{address} is out of scope: a public address (set scope.allow_public, or add it "
                    "to scope.allow)")
        what = "loopback, this machine itself" if address.is_loopback else \
            "private but not attached to this machine's interfaces"
        return f"{address} is out of scope: {what} (add it to scope.allow to allow it)"

    def refusal_of_targets(self, specs: Iterable[str]) -> str | None:
        """The same rules for many addresses (a probe request naming a range): None, or why
        not — also when they are more than scope.max_addresses."""
        try:
            targets = parse_targets(specs, exclude=self.scope.exclude, resolve=_no_resolve)
        except UsageError as exc:
            return str(exc)
        if targets.count > self.scope.max_addresses:
            return (f"{targets.count} addresses is more than scope.max_addresses "
                    f"({self.scope.max_addresses})")
        self._refresh()
        assert self._allowed is not None
        outside = targets.minus(self._allowed)
        if self.granted is not None:
            outside = outside.minus(self.granted)
        first = outside.first()
        return None if first is None else self.refusal(str(first))
