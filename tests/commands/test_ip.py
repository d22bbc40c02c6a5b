"""`lanscope ip`: facts about addresses and networks."""

from __future__ import annotations

import json

import pytest

from lanscope.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = main(["ip", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("value", "kind"), [
    ("10.1.2.3", "private"), ("8.8.8.8", "public"), ("127.0.0.1", "loopback"),
    ("169.254.1.1", "link-local"), ("224.0.0.251", "multicast"), ("240.0.0.1", "reserved"),
    ("100.64.0.1", "shared (CGNAT)"), ("0.0.0.0", "unspecified"), ("fd00::1", "private"),
    ("fe80::1", "link-local"), ("2001:4860::8888", "public"), ("ff02::1", "multicast"),
    # IANA's special-purpose registries, not "private" (ipaddress's is_private says so for these)
    ("198.18.0.10", "benchmarking"), ("198.19.255.255/32", "benchmarking"), ("2001:2::1", "benchmarking"),
    ("192.0.2.1", "documentation"), ("198.51.100.0/24", "documentation"), ("2001:db8::/32", "documentation"),
    ("3fff::1", "documentation"), ("192.0.0.9", "anycast"), ("64:ff9b::1.2.3.4", "translation"),
    ("2001::1", "teredo"), ("255.255.255.255", "broadcast"), ("0.0.0.0/0", "mixed"),
])
def test_types(capsys: pytest.CaptureFixture[str], value: str, kind: str) -> None:
    code, facts = run(capsys, value)
    assert code == 0 and facts["type"] == kind


def test_network_facts(capsys: pytest.CaptureFixture[str]) -> None:
    _, facts = run(capsys, "192.168.1.77/24")
    assert facts["network"] == "192.168.1.0/24" and facts["netmask"] == "255.255.255.0"
    assert facts["broadcast"] == "192.168.1.255" and facts["addresses"] == 256
    assert facts["usable_hosts"] == 254 and facts["address"] == "192.168.1.77"
    assert facts["integer"] == 3232235853 and facts["hex"] == "0xc0a8014d"
    assert facts["binary"] == "11000000.10101000.00000001.01001101"


def test_address_forms(capsys: pytest.CaptureFixture[str]) -> None:
    _, facts = run(capsys, "fd00::1")
    assert facts["version"] == 6 and facts["integer"] == int("fd00" + "0" * 27 + "1", 16)
    assert facts["reverse_pointer"].endswith("0.0.d.f.ip6.arpa")


@pytest.mark.parametrize(("argv", "result", "code"), [
    (["10.0.0.0/8", "--contains", "10.2.3.4"], True, 0),
    (["10.0.0.0/8", "--contains", "11.0.0.1"], False, 1),
    (["10.0.0.0/8", "--contains", "10.1.0.0/16"], True, 0),
    (["10.0.0.0/24", "--overlaps", "10.0.0.128/25"], True, 0),
    (["10.0.0.0/24", "--overlaps", "10.0.1.0/24"], False, 1),
    (["10.0.0.0/24", "--contains", "fd00::1"], False, 1),
])
def test_contains_and_overlaps(capsys: pytest.CaptureFixture[str], argv: list[str], result: bool,
                               code: int) -> None:
    got_code, facts = run(capsys, *argv)
    key = "contains" if "--contains" in argv else "overlaps"
    assert facts[key]["result"] is result and got_code == code


def test_bad_input_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ip", "10.0.0.300"]) == 2
    assert "ADDR|NET '10.0.0.300': not an IP address or network" in capsys.readouterr().err


def test_registry_names_the_range_and_rfc(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "198.18.0.10")[1]["registry"] == "Benchmarking (RFC 2544, 198.18.0.0/15)"
    assert run(capsys, "2001:db8::/32")[1]["registry"] == "Documentation (RFC 3849, 2001:db8::/32)"
    assert run(capsys, "8.8.8.8")[1]["registry"] is None
