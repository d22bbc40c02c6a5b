"""Target specifications in nmap's syntax, expanded lazily.

Accepted forms (space- or comma-separated, mixed freely)::

    198.18.0.10            one address (IPv4 or IPv6, ``fe80::1%eth0`` too)
    198.18.0.0/24          CIDR, host bits ignored like nmap (``198.18.0.7/24`` is the /24)
    fd00:1a5::/120         IPv6 CIDR
    198.18.0.1-254         octet ranges, in any octet: ``10.0.1-3.1-10``
    198.18.0.1,3,5         octet lists (and mixes: ``10.0.0.1-3,7``)
    198.18.0.*             wildcards; open ranges ``10.0.0.-`` / ``10.0.0.200-``
    host.example           a hostname, resolved (the first address, like nmap)
    host.example/30        a hostname's network

A ``Targets`` never materialises its addresses: every IPv4 component is a
*box* (one set of values per octet — a CIDR is a box too), every IPv6
component an integer interval. Overlaps and excludes are removed by splitting
boxes into disjoint pieces, so ``count`` is exact and iteration yields each
address once, in ascending order (IPv4 first), without holding a /8 in memory.

Listing (``lanscope list``) shows every address, like ``nmap -sL``. Sending is
narrower: ``Targets.sendable()`` skips the network and broadcast addresses of
IPv4 CIDRs wider than /31 (and of the attached subnets it is given),
multicast, 0.0.0.0/8, 240.0.0.0/4 and 255.255.255.255, so a scanner never
hits a broadcast address by mistake.
"""

from __future__ import annotations

import heapq
import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lanscope.errors import UsageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

_ALL_OCTETS = tuple(range(256))
_MAX_LINE = 4096  # target files: one spec per line; a longer line is not a target
# A token made only of these characters is an IPv4 pattern, never a hostname.
_IPV4_PATTERN = re.compile(r"^[0-9*,\-]*(\.[0-9*,\-]*){3}$")
_IPV4_LIKE = re.compile(r"^[0-9*,\-.]+$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")


# --------------------------------------------------------------------------
# Pieces: an IPv4 box or an IPv6 interval


@dataclass(frozen=True)
class _Box:
    """The IPv4 addresses a.b.c.d with each octet in its own sorted tuple."""

    octets: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    def __len__(self) -> int:
        a, b, c, d = self.octets
        return len(a) * len(b) * len(c) * len(d)

    def ints(self) -> Iterator[int]:
        a_s, b_s, c_s, d_s = self.octets
        for a in a_s:
            for b in b_s:
                for c in c_s:
                    base = (a << 24) | (b << 16) | (c << 8)
                    for d in d_s:
                        yield base | d

    def contains_int(self, value: int) -> bool:
        a, b, c, d = self.octets
        # Octet tuples are sorted runs; set lookups would cost a set per box.
        return ((value >> 24) in a and ((value >> 16) & 255) in b
                and ((value >> 8) & 255) in c and (value & 255) in d)

    def intersect(self, other: _Box) -> _Box | None:
        parts = []
        for mine, theirs in zip(self.octets, other.octets, strict=True):
            common = tuple(sorted(set(mine) & set(theirs)))
            if not common:
                return None
            parts.append(common)
        return _Box(tuple(parts))  # type: ignore[arg-type]

    def minus(self, other: _Box) -> list[_Box]:
        """Disjoint boxes covering self \\ other (at most four)."""
        if self.intersect(other) is None:
            return [self]
        pieces: list[_Box] = []
        kept: list[tuple[int, ...]] = []
        for i, (mine, theirs) in enumerate(zip(self.octets, other.octets, strict=True)):
            theirs_set = set(theirs)
            outside = tuple(v for v in mine if v not in theirs_set)
            if outside:
                pieces.append(_Box((*kept, outside, *self.octets[i + 1:])))  # type: ignore[arg-type]
            kept.append(tuple(v for v in mine if v in theirs_set))
        return pieces


def _box_of_network(net: ipaddress.IPv4Network) -> _Box:
    first, last = int(net.network_address), int(net.broadcast_address)
    octets = []
    for shift in (24, 16, 8, 0):
        lo, hi = (first >> shift) & 255, (last >> shift) & 255
        octets.append(_ALL_OCTETS if (lo, hi) == (0, 255) else tuple(range(lo, hi + 1)))
    return _Box(tuple(octets))  # type: ignore[arg-type]


def merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _subtract_intervals(keep: list[tuple[int, int]], drop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in keep:
        pieces = [(lo, hi)]
        for dlo, dhi in drop:
            nxt = []
            for plo, phi in pieces:
                if dhi < plo or dlo > phi:
                    nxt.append((plo, phi))
                    continue
                if plo < dlo:
                    nxt.append((plo, dlo - 1))
                if phi > dhi:
                    nxt.append((dhi + 1, phi))
            pieces = nxt
        out.extend(pieces)
    return out


# --------------------------------------------------------------------------
# Parsing one token


def _octet_values(text: str, token: str, position: int) -> tuple[int, ...]:
    """One octet field: ``5``, ``1-254``, ``*``, ``-``, ``200-``, ``1,3,5-7``."""
    where = f"{token!r}: octet {position}"
    if text == "":
        raise UsageError(f"{where} is empty")
    values: set[int] = set()
    for part in text.split(","):
        if part in ("*", "-"):
            return _ALL_OCTETS
        if part == "":
            raise UsageError(f"{where} has an empty list item in {text!r}")
        if "-" in part:
            lo_text, _, hi_text = part.partition("-")
            if "-" in hi_text:
                raise UsageError(f"{where}: {part!r} has more than one '-'")
            lo = _octet_number(lo_text or "0", token, position)
            hi = _octet_number(hi_text or "255", token, position)
            if lo > hi:
                raise UsageError(f"{where}: range {part!r} is reversed (start {lo} > end {hi})")
            values.update(range(lo, hi + 1))
        else:
            values.add(_octet_number(part, token, position))
    return tuple(sorted(values))


def _octet_number(text: str, token: str, position: int) -> int:
    if not text.isdigit() or len(text) > 3:
        raise UsageError(f"{token!r}: octet {position}: {text!r} is not a number 0-255")
    value = int(text)
    if value > 255:
        raise UsageError(f"{token!r}: octet {position}: {value} is out of range 0-255")
    return value


def _parse_prefix(text: str, token: str, bits: int) -> int:
    if not text.isdigit():
        raise UsageError(f"{token!r}: prefix length {text!r} is not a number")
    value = int(text)
    if value > bits:
        raise UsageError(f"{token!r}: prefix length /{value} is longer than /{bits}")
    return value


@dataclass
class _Parsed:
    boxes: list[_Box]
    intervals: list[tuple[int, int]]
    cidrs: list[ipaddress.IPv4Network]
    names: dict[IPAddress, str]


def _parse_token(token: str, resolve: Resolver, out: _Parsed) -> None:
    address_part, slash, prefix_text = token.partition("/")
    if slash and "/" in prefix_text:
        raise UsageError(f"{token!r}: more than one '/'")
    if not address_part:
        raise UsageError(f"{token!r}: no address before the '/'")
    if ":" in address_part:
        _parse_ipv6(token, address_part, prefix_text if slash else None, out)
        return
    if _IPV4_LIKE.match(address_part):
        if not _IPV4_PATTERN.match(address_part):
            dots = address_part.count(".")
            raise UsageError(f"{token!r}: an IPv4 address needs 4 octets, got {dots + 1}")
        fields = address_part.split(".")
        octets = tuple(_octet_values(f, token, i + 1) for i, f in enumerate(fields))
        if slash:
            if any(len(o) != 1 for o in octets):
                raise UsageError(f"{token!r}: a /prefix cannot be combined with octet ranges")
            address = ".".join(str(o[0]) for o in octets)
            network = ipaddress.IPv4Network(f"{address}/{_parse_prefix(prefix_text, token, 32)}",
                                            strict=False)
            out.boxes.append(_box_of_network(network))
            out.cidrs.append(network)
        else:
            out.boxes.append(_Box(octets))  # type: ignore[arg-type]
        return
    # A hostname.
    if not _HOSTNAME.match(address_part):
        raise UsageError(f"{token!r} is not an address, range, CIDR or hostname")
    prefix = None
    if slash:
        prefix = prefix_text
    try:
        addresses = resolve(address_part)
    except UsageError:
        raise
    except (OSError, UnicodeError, ValueError) as exc:
        raise UsageError(f"{token!r}: cannot resolve {address_part!r}: {exc}") from None
    if not addresses:
        raise UsageError(f"{token!r}: cannot resolve {address_part!r}: no address")
    # nmap scans the first address of a name (unless --resolve-all); prefer IPv4 like it does.
    parsed = [ipaddress.ip_address(a) for a in addresses]
    first = next((a for a in parsed if a.version == 4), parsed[0])
    out.names.setdefault(first, address_part)
    if first.version == 4:
        network4 = ipaddress.IPv4Network(
            f"{first}/{_parse_prefix(prefix, token, 32) if prefix is not None else 32}", strict=False)
        out.boxes.append(_box_of_network(network4))
        if network4.prefixlen < 32:
            out.cidrs.append(network4)
    else:
        network6 = ipaddress.IPv6Network(
            f"{first}/{_parse_prefix(prefix, token, 128) if prefix is not None else 128}", strict=False)
        out.intervals.append((int(network6.network_address), int(network6.broadcast_address)))


def _parse_ipv6(token: str, address_part: str, prefix_text: str | None, out: _Parsed) -> None:
    if any(c in address_part for c in "-*,"):
        raise UsageError(f"{token!r}: octet ranges, lists and '*' are IPv4 only; use a CIDR for IPv6")
    try:
        address = ipaddress.IPv6Address(address_part)
    except ValueError as exc:
        raise UsageError(f"{token!r}: not a valid IPv6 address ({exc})") from None
    bits = 128 if prefix_text is None else _parse_prefix(prefix_text, token, 128)
    network = ipaddress.IPv6Network(f"{address.exploded}/{bits}", strict=False)
    out.intervals.append((int(network.network_address), int(network.broadcast_address)))


def split_specs(specs: Iterable[str]) -> list[str]:
    """Split target arguments into tokens: whitespace separates, commas too unless they
    continue an IPv4 octet list (``10.0.0.1,3,5`` is one target, ``10.0.0.1,10.0.0.5`` two)."""
    tokens: list[str] = []
    for spec in specs:
        for word in spec.split():
            pieces = word.split(",")
            i = 0
            while i < len(pieces):
                # The longest run of pieces that still reads as one IPv4 pattern.
                j = i + 1
                for k in range(len(pieces), i + 1, -1):
                    candidate = ",".join(pieces[i:k]).partition("/")[0]
                    if _IPV4_PATTERN.match(candidate) and "," in candidate:
                        j = k
                        break
                token = ",".join(pieces[i:j])
                if token == "":
                    raise UsageError(f"{word!r}: empty target between commas")
                tokens.append(token)
                i = j
    return tokens


def system_resolve(name: str) -> list[str]:
    """Addresses of a hostname from the system resolver (blocking: call it off the event loop)."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {name!r}: {exc.strerror}") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


# --------------------------------------------------------------------------
# The set


class Targets:
    """A lazily expanded, de-duplicated, ordered set of target addresses."""

    def __init__(self, specs: tuple[str, ...], boxes: list[_Box], intervals: list[tuple[int, int]],
                 cidrs: list[ipaddress.IPv4Network], names: dict[IPAddress, str],
                 excludes: tuple[str, ...] = ()) -> None:
        self.specs = specs
        self.excludes = excludes
        self._boxes = boxes                    # disjoint
        self._intervals = intervals            # disjoint, merged, sorted
        self._cidrs = cidrs
        self.names = names                     # address -> the hostname the user gave

    # -- set protocol ------------------------------------------------------

    @property
    def count(self) -> int:
        """How many addresses: exact at any size (``len()`` cannot hold an IPv6 /64's 2**64)."""
        return self.ipv4_count + self.ipv6_count

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return bool(self._boxes or self._intervals)

    def __iter__(self) -> Iterator[IPAddress]:
        for value in self.ints4():
            yield ipaddress.IPv4Address(value)
        for lo, hi in self._intervals:
            for value in range(lo, hi + 1):
                yield ipaddress.IPv6Address(value)

    def __contains__(self, item: object) -> bool:
        try:
            address = item if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)) \
                else ipaddress.ip_address(str(item))
        except ValueError:
            return False
        if address.version == 4:
            value = int(address)
            return any(b.contains_int(value) for b in self._boxes)
        value = int(address)
        return any(lo <= value <= hi for lo, hi in self._intervals)

    def __repr__(self) -> str:
        return f"Targets({' '.join(self.specs)!r}, {self.count} addresses)"

    def ints4(self) -> Iterator[int]:
        """IPv4 addresses as integers, ascending (fast path for packet builders)."""
        if len(self._boxes) == 1:
            yield from self._boxes[0].ints()
        else:
            yield from heapq.merge(*(b.ints() for b in self._boxes))

    @property
    def ipv4_count(self) -> int:
        return sum(len(b) for b in self._boxes)

    @property
    def ipv6_count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self._intervals)

    def ipv6(self) -> Iterator[ipaddress.IPv6Address]:
        for lo, hi in self._intervals:
            for value in range(lo, hi + 1):
                yield ipaddress.IPv6Address(value)

    # -- algebra (used by scope checks) -------------------------------------

    def minus(self, other: Targets) -> Targets:
        """The addresses of self that are not in other."""
        boxes = self._boxes
        for drop in other._boxes:
            boxes = [piece for box in boxes for piece in box.minus(drop)]
        intervals = _subtract_intervals(self._intervals, other._intervals)
        return Targets(self.specs, boxes, intervals, self._cidrs, self.names, self.excludes)

    def intersect(self, other: Targets) -> Targets:
        """The addresses of self that are also in other."""
        return self.minus(self.minus(other))

    def first(self) -> IPAddress | None:
        return next(iter(self), None)

    # -- sending --------------------------------------------------------------

    def never_send4(self, attached: Iterable[IPNetwork] = ()) -> set[int]:
        """Network/broadcast addresses (of CIDRs wider than /31 and of attached subnets)."""
        skip: set[int] = set()
        networks = list(self._cidrs) + [n for n in attached if n.version == 4]
        for net in networks:
            if net.prefixlen < 31:
                skip.add(int(net.network_address))
                skip.add(int(net.broadcast_address))
        return skip

    def sendable_ints4(self, attached: Iterable[IPNetwork] = ()) -> Iterator[int]:
        """IPv4 targets that may receive a packet: no broadcast/network/multicast/reserved."""
        skip = self.never_send4(attached)
        for value in self.ints4():
            top = value >> 24
            # 0/8 "this network", 224/4 multicast, 240/4 reserved incl. 255.255.255.255.
            if top == 0 or top >= 224 or value in skip:
                continue
            yield value

    def sendable(self, attached: Iterable[IPNetwork] = ()) -> Iterator[IPAddress]:
        """Every address a probe may be sent to (IPv4 as above; IPv6 without multicast)."""
        for value in self.sendable_ints4(attached):
            yield ipaddress.IPv4Address(value)
        for address in self.ipv6():
            if not (address.is_multicast or address.is_unspecified):
                yield address


def parse_targets(specs: Iterable[str], *, exclude: Iterable[str] = (),
                  resolve: Resolver | None = None) -> Targets:
    """Parse nmap-style target specs; raise UsageError quoting a bad token and why."""
    resolver = resolve or system_resolve
    tokens = tuple(split_specs(specs))
    include = _Parsed([], [], [], {})
    for token in tokens:
        _parse_token(token, resolver, include)
    exclude_tokens = tuple(split_specs(exclude))
    dropped = _Parsed([], [], [], {})
    for token in exclude_tokens:
        try:
            _parse_token(token, resolver, dropped)
        except UsageError as exc:
            raise UsageError(f"--exclude {exc}") from None
    # Make the include boxes disjoint: each new box minus every earlier piece.
    pieces: list[_Box] = []
    for box in include.boxes:
        fragments = [box]
        for earlier in pieces:
            fragments = [f for fragment in fragments for f in fragment.minus(earlier)]
            if not fragments:
                break
        pieces.extend(fragments)
    targets = Targets(tokens, pieces, merge_intervals(include.intervals), include.cidrs,
                      include.names, exclude_tokens)
    if exclude_tokens:
        drop = Targets((), dropped.boxes, merge_intervals(dropped.intervals), [], {})
        targets = targets.minus(drop)
    return targets


async def parse_targets_async(specs: Iterable[str], *, exclude: Iterable[str] = (),
                              resolve: Resolver | None = None) -> Targets:
    """parse_targets for async callers: name resolution blocks, so it runs in a thread."""
    import asyncio

    specs, exclude = list(specs), list(exclude)
    return await asyncio.to_thread(parse_targets, specs, exclude=exclude, resolve=resolve)


def read_target_file(path: str | Path) -> list[str]:
    """Specs from a file for -iL / --exclude-file: whitespace-separated, ``#`` comments; ``-`` is stdin."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read target file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"target file {str(path)!r} is not text") from None
    specs: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) > _MAX_LINE:
            raise UsageError(f"{path}:{number}: line is longer than {_MAX_LINE} characters")
        specs.extend(line.split())
    return specs


def prefix_spec(prefix: str, start: int, end: int) -> str:
    """The seed's ``--prefix 10.0.10. --start 1 --end 50`` form as one nmap spec (``10.0.10.1-50``)."""
    base = prefix.rstrip(".")
    fields = base.split(".")
    if len(fields) != 3 or not all(f.isdigit() and int(f) <= 255 for f in fields):
        raise UsageError(f"--prefix {prefix!r}: expected three octets like '10.0.10.'")
    for name, value in (("--start", start), ("--end", end)):
        if not 0 <= value <= 255:
            raise UsageError(f"{name} {value}: must be 0-255")
    if start > end:
        raise UsageError(f"--start {start} is after --end {end}")
    return f"{base}.{start}-{end}" if start != end else f"{base}.{start}"
