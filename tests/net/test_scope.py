"""Scope refusals: what is refused, and that the message names the flag that allows it."""

from __future__ import annotations

import argparse
import ipaddress

import pytest

from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.config import Config, ScopeConfig
from lanscope.errors import ScopeError, UsageError
from lanscope.net.scope import ScopeGuard, check_scope
from lanscope.net.targets import parse_targets

LAB = [ipaddress.ip_network("198.18.0.0/16"), ipaddress.ip_network("127.0.0.0/8")]


def check(spec: str, scope: ScopeConfig | None = None, **flags: bool) -> None:
    check_scope(parse_targets([spec]), scope or ScopeConfig(), attached=LAB, **flags)


@pytest.mark.parametrize("spec", ["198.18.0.0/24", "198.18.0.0/16", "198.18.7.33", "127.0.0.1"])
def test_attached_networks_are_allowed(spec: str) -> None:
    check(spec)


@pytest.mark.parametrize(("spec", "scope", "flags", "message"), [
    ("8.8.8.8", None, {}, r"^8\.8\.8\.8 is not a private address .* pass --allow-public"),
    ("198.19.0.0/24", None, {}, r"^198\.19\.0\.0 \(and 255 more\) .* --allow-public"),
    ("10.0.0.0/24", None, {}, r"^10\.0\.0\.0 \(and 255 more\) is private but not attached .*"
                              r"add it to scope\.allow in the config, or pass --force"),
    ("198.18.0.0/15", None, {}, r"more than scope\.max_addresses \(65,536\); pass --force"),
    ("10.0.0.0/24", ScopeConfig(max_addresses=100), {"force": False}, r"pass --force"),
    ("8.8.8.8", None, {"force": True}, r"--allow-public"),        # --force does not allow public
])
def test_refusals_name_the_flag(spec: str, scope: ScopeConfig | None, flags: dict[str, bool],
                                message: str) -> None:
    with pytest.raises(ScopeError, match=message):
        check(spec, scope, **flags)


@pytest.mark.parametrize(("spec", "scope", "flags"), [
    ("8.8.8.8", None, {"allow_public": True}),
    ("8.8.8.8", ScopeConfig(allow_public=True), {}),
    ("10.0.0.0/24", ScopeConfig(allow=["10.0.0.0/16"]), {}),
    ("10.0.0.1-20", ScopeConfig(allow=["10.0.0.1-50"]), {}),
    ("10.0.0.0/24", None, {"force": True}),
    ("198.18.0.0/15", None, {"force": True, "allow_public": True}),
])
def test_flags_and_config_allow(spec: str, scope: ScopeConfig | None, flags: dict[str, bool]) -> None:
    check(spec, scope, **flags)


def test_attached_off_means_only_scope_allow() -> None:
    with pytest.raises(ScopeError, match=r"198\.18\.0\.10"):
        check("198.18.0.10", ScopeConfig(attached=False), allow_public=False)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target_arguments(parser)
    return parser.parse_args(list(argv))


def test_lab_range_is_refused_where_it_is_not_attached() -> None:
    """198.18.0.0/15 is not RFC 1918: on a machine without the lab bridge it is refused,
    before any packet, by the same function the commands call."""
    with pytest.raises(ScopeError, match=r"198\.18\.0\.10 .*--allow-public"):
        targets_from_args(_args("198.18.0.10"), Config(), attached=[])


def test_targets_from_args_applies_excludes_prefix_and_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.txt").write_text("198.18.0.20 # comment\n")
    (tmp_path / "ex.txt").write_text("198.18.0.3\n")
    args = _args("198.18.0.1-5", "--exclude", "198.18.0.2", "-iL", str(tmp_path / "in.txt"),
                 "--exclude-file", str(tmp_path / "ex.txt"), "--prefix", "198.18.1.", "--start", "1",
                 "--end", "2")
    config = Config(scope=ScopeConfig(exclude=["198.18.0.4"]))
    targets = targets_from_args(args, config, attached=LAB)
    assert [str(a) for a in targets] == ["198.18.0.1", "198.18.0.5", "198.18.0.20", "198.18.1.1",
                                         "198.18.1.2"]


def test_no_targets_uses_config_targets() -> None:
    targets = targets_from_args(_args(), Config(targets=["198.18.0.1-3"]), attached=LAB)
    assert len(targets) == 3


def test_everything_excluded_is_an_error() -> None:
    with pytest.raises(UsageError, match="no addresses left"):
        targets_from_args(_args("198.18.0.1", "--exclude", "198.18.0.0/24"), Config(), attached=LAB)


@pytest.mark.parametrize(("spec", "count"), [
    ("fd00:1a5::/64", 2**64), ("::/0", 2**128), ("fd00::/96", 2**32), ("10.0.0.0/7", 2**25),
])
def test_huge_targets_are_counted_and_refused_even_with_force(spec: str, count: int) -> None:
    """len() of an IPv6 /64 raised OverflowError (2**64 does not fit an index): the size is
    `Targets.count`, and what cannot be enumerated is refused with what to pass instead."""
    targets = parse_targets([spec])
    assert targets.count == count
    assert repr(targets).endswith(f"{count} addresses)")
    for flags in ({}, {"force": True}, {"force": True, "allow_public": True}):
        with pytest.raises(ScopeError, match=r"at most 16,777,216 .* even with --force; split it"):
            check(spec, ScopeConfig(allow=[spec]), **flags)


def test_the_largest_enumerable_target_needs_force() -> None:
    with pytest.raises(ScopeError, match=r"pass --force"):
        check("10.0.0.0/8", ScopeConfig(allow=["10.0.0.0/8"]))
    check("10.0.0.0/8", ScopeConfig(allow=["10.0.0.0/8"]), force=True)
    with pytest.raises(ScopeError, match="IPv6 subnets are too large to sweep"):
        check("fd00::/64", ScopeConfig(allow=["fd00::/64"]), force=True)


# ----------------------------------------------------------------- ScopeGuard (stages)

LAN = [ipaddress.ip_network("198.18.0.0/16"), ipaddress.ip_network("fd00:1a5::/64")]


def guard(**scope: object) -> ScopeGuard:
    return ScopeGuard(ScopeConfig(**scope), attached=lambda: LAN)   # type: ignore[arg-type]


@pytest.mark.parametrize(("address", "scope", "refusal"), [
    ("198.18.0.10", {}, None),
    ("fd00:1a5::10", {}, None),
    ("127.0.0.1", {}, "loopback, this machine itself (add it to scope.allow"),
    ("127.0.0.1", {"allow": ["127.0.0.0/8"]}, None),
    ("203.0.113.5", {}, "a public address (set scope.allow_public"),
    ("203.0.113.5", {"allow_public": True}, None),
    ("10.1.2.3", {}, "private but not attached to this machine's interfaces"),
    ("10.1.2.3", {"allow": ["10.1.2.0/24"]}, None),
    ("198.18.0.12", {"exclude": ["198.18.0.12"]}, "scope.exclude names it"),
    ("198.18.0.10", {"attached": False}, "a public address"),     # 198.18/15 is not private
    ("198.18.255.255", {}, "network or broadcast address of an attached subnet"),
    ("224.0.0.251", {"allow_public": True}, "multicast or unspecified"),
    ("999.1.1.1", {}, "is not an IP address"),
])
def test_the_guard_applies_the_commands_rules_to_one_address(address: str, scope: dict[str, object],
                                                             refusal: str | None) -> None:
    answer = guard(**scope).refusal(address)
    if refusal is None:
        assert answer is None
    else:
        assert answer is not None and refusal in answer


def test_the_guard_allows_what_a_command_checked_with_its_flags_exclusions_aside() -> None:
    granted = parse_targets(["10.5.0.0/24", "8.8.8.8"])
    g = ScopeGuard(ScopeConfig(exclude=["10.5.0.9"]), granted=granted, attached=lambda: LAN)
    assert g.refusal("10.5.0.7") is None and g.refusal("8.8.8.8") is None
    assert g.refusal("10.5.0.9") is not None and g.refusal("10.5.1.1") is not None


def test_the_guard_reads_the_interfaces_again_after_refresh_secs() -> None:
    now, networks = [0.0], [LAN[0]]
    g = ScopeGuard(ScopeConfig(), attached=lambda: list(networks), refresh_secs=30, clock=lambda: now[0])
    assert g.refusal("192.168.7.2") is not None
    networks.append(ipaddress.ip_network("192.168.7.0/24"))
    now[0] = 10.0
    assert g.refusal("192.168.7.2") is not None        # remembered until the refresh
    now[0] = 31.0
    assert g.refusal("192.168.7.2") is None


def test_many_addresses_follow_the_same_rules_and_the_size_guard() -> None:
    g = guard()
    assert g.refusal_of_targets(["198.18.0.0/24"]) is None
    assert "203.0.113.0 is out of scope" in (g.refusal_of_targets(["198.18.0.1", "203.0.113.0/30"]) or "")
    assert "more than scope.max_addresses (65536)" in (g.refusal_of_targets(["198.18.0.0/15"]) or "")
