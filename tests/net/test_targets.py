"""nmap-style target parsing: exact expansions, every malformed form with its error."""

from __future__ import annotations

import ipaddress

import pytest

from lanscope.errors import UsageError
from lanscope.net.targets import parse_targets, prefix_spec, read_target_file, split_specs

NAMES = {"gw.lab.test": ["198.18.0.254"], "v6.lab.test": ["fd00:1a5::10"],
         "both.lab.test": ["fd00::1", "198.18.0.7"]}


def fake_resolve(name: str) -> list[str]:
    if name not in NAMES:
        raise OSError(f"unknown host {name}")
    return NAMES[name]


def expand(*specs: str, exclude: tuple[str, ...] = ()) -> list[str]:
    return [str(a) for a in parse_targets(specs, exclude=exclude, resolve=fake_resolve)]


@pytest.mark.parametrize(("specs", "expected"), [
    (["10.0.0.1"], ["10.0.0.1"]),
    (["10.0.0.0/30"], ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    (["10.0.0.5/30"], ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]),   # host bits ignored
    (["10.0.0.1/32"], ["10.0.0.1"]),
    (["10.0.0.1-3"], ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    (["10.0.0.1,3,5"], ["10.0.0.1", "10.0.0.3", "10.0.0.5"]),
    (["10.0.0.1-2,9"], ["10.0.0.1", "10.0.0.2", "10.0.0.9"]),
    (["10.0.1-2.1-2"], ["10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.2.2"]),
    (["10.0.1,3.7"], ["10.0.1.7", "10.0.3.7"]),
    (["10.0.0.253-"], ["10.0.0.253", "10.0.0.254", "10.0.0.255"]),
    (["10.0.0.-2"], ["10.0.0.0", "10.0.0.1", "10.0.0.2"]),
    (["10.0.0.5 10.0.0.1"], ["10.0.0.1", "10.0.0.5"]),                    # ascending
    (["10.0.0.1,10.0.0.2"], ["10.0.0.1", "10.0.0.2"]),                    # comma between targets
    (["10.0.0.1,3,10.0.0.2"], ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    (["10.0.0.1", "10.0.0.0/31", "10.0.0.1-2"], ["10.0.0.0", "10.0.0.1", "10.0.0.2"]),  # no dups
    (["fd00::1"], ["fd00::1"]),
    (["fd00::/127"], ["fd00::", "fd00::1"]),
    (["fd00::2 10.0.0.1"], ["10.0.0.1", "fd00::2"]),                      # IPv4 first
    (["gw.lab.test"], ["198.18.0.254"]),
    (["gw.lab.test/31"], ["198.18.0.254", "198.18.0.255"]),
    (["v6.lab.test"], ["fd00:1a5::10"]),
    (["both.lab.test"], ["198.18.0.7"]),                                  # first IPv4, like nmap
])
def test_expansions(specs: list[str], expected: list[str]) -> None:
    targets = parse_targets(specs, resolve=fake_resolve)
    assert [str(a) for a in targets] == expected
    assert len(targets) == len(expected)


def test_wildcard_is_the_whole_octet() -> None:
    targets = parse_targets(["192.168.1.*"])
    assert len(targets) == 256
    assert str(targets.first()) == "192.168.1.0"
    assert "192.168.1.255" in targets and "192.168.2.0" not in targets


@pytest.mark.parametrize(("specs", "exclude", "expected"), [
    (["10.0.0.0/29"], ["10.0.0.0/30"], ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"]),
    (["10.0.0.1-5"], ["10.0.0.2,4"], ["10.0.0.1", "10.0.0.3", "10.0.0.5"]),
    (["10.0.0.1-3"], ["10.0.0.9"], ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    (["fd00::/126"], ["fd00::1"], ["fd00::", "fd00::2", "fd00::3"]),
    (["10.0.0.1"], ["10.0.0.0/24"], []),
])
def test_excludes(specs: list[str], exclude: list[str], expected: list[str]) -> None:
    assert expand(*specs, exclude=tuple(exclude)) == expected


def test_a_slash_8_is_lazy_and_exact() -> None:
    targets = parse_targets(["10.0.0.0/8"], exclude=["10.1.0.0/16", "10.0.0.0/24"])
    assert len(targets) == 2**24 - 2**16 - 256
    assert str(targets.first()) == "10.0.1.0"
    assert "10.1.2.3" not in targets and "10.2.0.0" in targets
    assert targets.specs == ("10.0.0.0/8",)


def test_overlapping_ranges_count_once() -> None:
    targets = parse_targets(["10.0.0-1.*", "10.0.1.0/25", "10.0.0.*"])
    assert len(targets) == 512 == len(list(targets))


@pytest.mark.parametrize(("spec", "message"), [
    ("10.0.0.256", r"'10\.0\.0\.256': octet 4: 256 is out of range 0-255"),
    ("10.0.0.9-1", r"octet 4: range '9-1' is reversed \(start 9 > end 1\)"),
    ("10.0.0", r"'10\.0\.0': an IPv4 address needs 4 octets, got 3"),
    ("10.0.0.1.5", r"needs 4 octets, got 5"),
    ("42", r"needs 4 octets, got 1"),
    ("10..0.1", r"'10\.\.0\.1': octet 2 is empty"),
    ("10.0.0.1-2-3", r"'1-2-3' has more than one '-'"),
    ("10.0.0.1,,3", r"empty target between commas|empty list item"),
    ("10.0.0.0/33", r"'10\.0\.0\.0/33': prefix length /33 is longer than /32"),
    ("10.0.0.0/x", r"prefix length 'x' is not a number"),
    ("10.0.0.0/24/8", r"more than one '/'"),
    ("/24", r"no address before the '/'"),
    ("10.0.0.1-5/24", r"a /prefix cannot be combined with octet ranges"),
    ("fd00::zz", r"'fd00::zz': not a valid IPv6 address"),
    ("fd00::1-5", r"ranges, lists and '\*' are IPv4 only"),
    ("fd00::/129", r"prefix length /129 is longer than /128"),
    ("bad_host!", r"'bad_host!' is not an address, range, CIDR or hostname"),
    ("nosuch.lab.test", r"'nosuch\.lab\.test': cannot resolve 'nosuch\.lab\.test'"),
    ("10.0.0.1a", r"'10\.0\.0\.1a': cannot resolve"),   # a name, like nmap reads it
])
def test_malformed_specs_quote_the_token(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_targets([spec], resolve=fake_resolve)


def test_bad_exclude_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"^--exclude '10\.0\.0\.300'"):
        parse_targets(["10.0.0.1"], exclude=["10.0.0.300"])


@pytest.mark.parametrize(("words", "tokens"), [
    (["10.0.0.1,3,5"], ["10.0.0.1,3,5"]),
    (["10.0.0.1,10.0.0.2 host"], ["10.0.0.1", "10.0.0.2", "host"]),
    (["10.0.1,2.5"], ["10.0.1,2.5"]),
    (["  10.0.0.1\t10.0.0.2 "], ["10.0.0.1", "10.0.0.2"]),
    (["10.0.0.0/24,fd00::1"], ["10.0.0.0/24", "fd00::1"]),
])
def test_split_specs(words: list[str], tokens: list[str]) -> None:
    assert split_specs(words) == tokens


def test_sendable_skips_network_broadcast_and_multicast() -> None:
    targets = parse_targets(["10.0.0.0/30", "10.0.1.0/31", "224.0.0.1", "255.255.255.255", "0.0.0.1",
                             "198.18.255.255", "198.18.0.255"])
    attached = [ipaddress.ip_network("198.18.0.0/16")]
    sent = [str(a) for a in targets.sendable(attached)]
    # /31 has no network/broadcast; 198.18.0.255 is an ordinary address in a /16.
    assert sent == ["10.0.0.1", "10.0.0.2", "10.0.1.0", "10.0.1.1", "198.18.0.255"]
    # Listing still shows everything, like nmap -sL.
    assert "10.0.0.0" in targets and "224.0.0.1" in targets


def test_target_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "targets.txt"
    path.write_text("# lab\n10.0.0.1 10.0.0.2  # two\n\n10.0.1.0/30\n")
    assert read_target_file(path) == ["10.0.0.1", "10.0.0.2", "10.0.1.0/30"]
    with pytest.raises(UsageError, match=r"cannot read target file '.*missing'"):
        read_target_file(tmp_path / "missing")


@pytest.mark.parametrize(("prefix", "start", "end", "expected"), [
    ("10.0.10.", 1, 50, "10.0.10.1-50"),
    ("10.0.10", 7, 7, "10.0.10.7"),
])
def test_prefix_form(prefix: str, start: int, end: int, expected: str) -> None:
    assert prefix_spec(prefix, start, end) == expected
    assert len(parse_targets([expected])) == end - start + 1


@pytest.mark.parametrize(("prefix", "start", "end", "message"), [
    ("10.0.", 1, 5, r"--prefix '10\.0\.': expected three octets"),
    ("10.0.300.", 1, 5, r"expected three octets"),
    ("10.0.0.", 9, 5, r"--start 9 is after --end 5"),
    ("10.0.0.", 1, 256, r"--end 256: must be 0-255"),
])
def test_prefix_form_errors(prefix: str, start: int, end: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        prefix_spec(prefix, start, end)
