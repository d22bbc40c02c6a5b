"""A sweep's coverage: exactly the addresses it sent to, as ``SweepCompleted.covered`` carries it.

The wire form is a list of CIDRs, each ``address/prefix`` in ``ipaddress``'s
canonical text with no host bits set, IPv4 before IPv6, ascending, disjoint,
and as few as cover the set (``covered_cidrs``). A sweep that skipped an
address (an exclude, the scanner's own address, a network or broadcast
address) does not cover it, so a /24 swept without .0 and .255 is fourteen
CIDRs (``x.y.z.1/32, .2/31, .4/30 ... .128/26 ... .252/31, .254/32``), not the /24.

``read_coverage`` is the one reader: it accepts any CIDR without host bits
(the order and overlaps of another writer do not matter) and raises
ValueError naming the first entry that is not one; the host_state sink turns
that into an unusable event, which the runtime dead-letters.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

from lanscope.net.targets import IPAddress, merge_intervals

_BITS = {4: 32, 6: 128}


def covered_cidrs(addresses: Iterable[IPAddress | int]) -> list[str]:
    """The fewest CIDRs that hold exactly ``addresses`` (an int is an IPv4 address)."""
    return Coverage.of(addresses).cidrs()


def _blocks(lo: int, hi: int, bits: int) -> Iterable[tuple[int, int]]:
    """The aligned power-of-two blocks, largest first, that tile [lo, hi]: (first, prefix)."""
    while lo <= hi:
        aligned = (lo & -lo).bit_length() - 1 if lo else bits    # lo is a multiple of 2**aligned
        fits = (hi - lo + 1).bit_length() - 1                      # 2**fits addresses remain at least
        size = min(aligned, fits)
        yield lo, bits - size
        lo += 1 << size


class Coverage:
    """A set of addresses as merged ranges per family: ``"198.18.0.7" in coverage``."""

    def __init__(self, ranges: dict[int, list[tuple[int, int]]]) -> None:
        self._ranges = {v: merge_intervals(ranges.get(v, ())) for v in (4, 6)}
        self._starts = {v: [lo for lo, _ in r] for v, r in self._ranges.items()}

    @classmethod
    def of(cls, addresses: Iterable[IPAddress | int]) -> Coverage:
        """Exactly ``addresses`` (an int is an IPv4 address)."""
        values: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for address in addresses:
            if isinstance(address, int):
                values[4].append((address, address))
            else:
                values[address.version].append((int(address), int(address)))
        return cls(values)

    def cidrs(self) -> list[str]:
        """The wire form (see the module)."""
        out: list[str] = []
        for version, ranges in self._ranges.items():
            make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
            for lo, hi in ranges:
                out.extend(f"{make(first)}/{prefix}" for first, prefix in _blocks(lo, hi, _BITS[version]))
        return out

    def __bool__(self) -> bool:
        return any(self._ranges.values())

    def __contains__(self, ip: object) -> bool:
        try:
            address = ipaddress.ip_address(str(ip))
        except ValueError:
            return False
        value = int(address)
        at = bisect.bisect_right(self._starts[address.version], value) - 1
        return at >= 0 and value <= self._ranges[address.version][at][1]


def read_coverage(cidrs: Iterable[str]) -> Coverage:
    """SweepCompleted.covered as a Coverage; ValueError naming the first entry that is not a
    CIDR (``address/prefix``, no host bits set)."""
    ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for index, text in enumerate(cidrs):
        try:
            if "/" not in text:
                raise ValueError("no /prefix")
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ValueError(f"covered[{index}] {text[:60]!r} is not a CIDR: {exc}") from None
        ranges[network.version].append((int(network.network_address), int(network.broadcast_address)))
    return Coverage(ranges)
