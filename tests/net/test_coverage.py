"""A sweep's coverage as SweepCompleted carries it: exactly the addresses sent to, and back."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, ip_address

import pytest

from lanscope.net.coverage import Coverage, covered_cidrs, read_coverage
from lanscope.net.targets import parse_targets


def test_a_whole_block_is_one_cidr_and_a_skipped_address_splits_it() -> None:
    assert covered_cidrs(parse_targets(["198.18.0.0/24"])) == ["198.18.0.0/24"]
    assert covered_cidrs(parse_targets(["198.18.0.0/24"]).sendable()) == [
        "198.18.0.1/32", "198.18.0.2/31", "198.18.0.4/30", "198.18.0.8/29", "198.18.0.16/28",
        "198.18.0.32/27", "198.18.0.64/26", "198.18.0.128/26", "198.18.0.192/27", "198.18.0.224/28",
        "198.18.0.240/29", "198.18.0.248/30", "198.18.0.252/31", "198.18.0.254/32"]
    assert covered_cidrs([]) == []


def test_ints_are_ipv4_and_ipv4_comes_before_ipv6_in_canonical_text() -> None:
    six = [ip_address("FD00:1A5::2"), ip_address("fd00:1a5::3"), ip_address("fd00:1a5:0::1")]
    assert covered_cidrs([*six, int(IPv4Address("198.18.0.7")), ip_address("198.18.0.6")]) == [
        "198.18.0.6/31", "fd00:1a5::1/128", "fd00:1a5::2/127"]


def test_round_trip_is_exact_for_any_set() -> None:
    rng = random.Random(17)
    base = int(IPv4Address("198.18.0.0"))
    for _ in range(50):
        chosen = {base + rng.randrange(2048) for _ in range(rng.randrange(1, 600))}
        cidrs = covered_cidrs(chosen)
        coverage = read_coverage(cidrs)
        assert {v for v in range(base - 2, base + 2050) if str(IPv4Address(v)) in coverage} == chosen
        assert coverage.cidrs() == cidrs
        assert len(cidrs) == len(set(cidrs))


def test_another_writers_order_and_overlaps_are_read_alike() -> None:
    coverage = read_coverage(["198.18.0.128/25", "198.18.0.0/24", "fd00::/127", "198.18.1.0/32"])
    assert coverage.cidrs() == ["198.18.0.0/24", "198.18.1.0/32", "fd00::/127"]
    assert "198.18.1.0" in coverage and "198.18.1.1" not in coverage and "fd00::1" in coverage
    assert "not an address" not in coverage and not read_coverage([])


@pytest.mark.parametrize(("entry", "why"), [
    ("198.18.0.1/24", "has host bits set"),
    ("198.18.0.1", "no /prefix"),
    ("198.18.0.300/32", "does not appear to be an IPv4 or IPv6 network"),
    ("fd00::/129", "does not appear to be an IPv4 or IPv6 network"),
    ("", "no /prefix"),
])
def test_an_entry_that_is_not_a_cidr_is_an_error_naming_it(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=r"covered\[1\]") as error:
        read_coverage(["198.18.0.0/24", entry])
    assert repr(entry) in str(error.value) and why in str(error.value)


def test_coverage_of_addresses_and_membership() -> None:
    coverage = Coverage.of([ip_address("198.18.0.5"), int(IPv4Address("198.18.0.6"))])
    assert "198.18.0.5" in coverage and "198.18.0.6" in coverage and "198.18.0.7" not in coverage
    assert "fd00::5" not in coverage
