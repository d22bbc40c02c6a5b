"""nmap-compatible port specifications and the shipped --top-ports ranking."""

from __future__ import annotations

import pytest

from lanscope.errors import UsageError
from lanscope.net.ports import PortSpec, compress, parse_ports, resolve, service_name, top_ports


@pytest.mark.parametrize(("spec", "udp", "tcp_ports", "udp_ports"), [
    ("22", False, (22,), ()),
    ("22,80,443", False, (22, 80, 443), ()),
    ("1-5", False, (1, 2, 3, 4, 5), ()),
    ("80,22,80", False, (22, 80), ()),
    ("-3", False, (1, 2, 3), ()),
    ("65533-", False, (65533, 65534, 65535), ()),
    ("U:53,161,T:21-23,80", False, (21, 22, 23, 80), (53, 161)),
    ("T:22,U:53", False, (22,), (53,)),
    ("53", True, (53,), (53,)),
    ("ssh,http", False, (22, 80, 8008), ()),
    ("ssh", False, (22,), ()),
    ("U:snmp", False, (), (161,)),
    (" 22 , 23 ", False, (22, 23), ()),
])
def test_parse_ports(spec: str, udp: bool, tcp_ports: tuple[int, ...], udp_ports: tuple[int, ...]) -> None:
    parsed = parse_ports(spec, udp=udp)
    assert parsed.tcp == tcp_ports
    assert parsed.udp == udp_ports


def test_all_ports() -> None:
    assert parse_ports("-").tcp == tuple(range(1, 65536))
    assert parse_ports("1-65535").describe() == ["tcp:1-65535"]


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty"),
    ("22,,23", "empty item"),
    ("70000", "out of range"),
    ("30-20", "backwards"),
    ("nosuchservice", "unknown service name"),
    ("22;rm -rf", "not a port"),
    ("S:22", "SCTP"),
    ("T:", "needs ports"),
    ("1" * 5000, "too long"),
])
def test_bad_specs_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_ports(spec)


def test_top_ports_follow_nmap_ranking() -> None:
    # nmap-services' most frequently open TCP ports, in order.
    assert top_ports(10) == (80, 23, 443, 21, 22, 25, 3389, 110, 445, 139)
    assert len(set(top_ports(1000))) == 1000
    assert top_ports(5, "udp")[:3] == (631, 161, 137)
    assert len(top_ports(65535)) == 65535


def test_top_ports_rejects_zero() -> None:
    with pytest.raises(UsageError):
        top_ports(0)


def test_resolve_defaults_and_top() -> None:
    assert resolve(None).tcp == tuple(range(20, 1025))      # the seed's default stays
    assert resolve(None, top=3).tcp == (23, 80, 443)
    spec = resolve(None, udp=True, udp_default="53,161")
    assert spec.udp == (53, 161)
    assert resolve("22", tcp=True).tcp == (22,)


def test_compress_and_describe() -> None:
    assert compress([20, 21, 22, 80, 443, 444]) == "20-22,80,443-444"
    assert PortSpec(tcp=(22,), udp=(53, 54)).describe() == ["tcp:22", "udp:53-54"]


def test_service_names() -> None:
    assert service_name(22) == "ssh"
    assert service_name(161, "udp") == "snmp"
    assert service_name(1) is not None
