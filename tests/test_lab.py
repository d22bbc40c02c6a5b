"""The lab itself: topology, every server answering, ICMP/filtering, DNS, controls, clean teardown."""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.lab import Lab, LabHost, netns, probes

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]


def _banner(host: LabHost, send: bytes = b"", port: int | None = None) -> bytes:
    return probes.tcp_banner(host.ip, port or host.tcp_open[0], send=send, timeout=5.0)


# --- topology --------------------------------------------------------------


def test_lab_is_up_and_pytest_runs_in_the_scanner_namespace(lab: Lab) -> None:
    assert lab.is_up()
    assert set(lab.namespaces()) <= netns.list_netns()
    assert os.stat("/proc/self/ns/net").st_ino == netns.netns_inode(lab.scanner_ns)


def test_threads_and_subprocesses_inherit_the_scanner_namespace(lab: Lab) -> None:
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(os.stat("/proc/thread-self/ns/net").st_ino))
    thread.start()
    thread.join()
    assert seen == [netns.netns_inode(lab.scanner_ns)]
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "br0"], capture_output=True, text=True, check=True
    )
    assert f"{lab.SCANNER_IP}/16" in out.stdout


def test_topology_has_the_promised_shape(lab: Lab) -> None:
    live_24 = lab.live_hosts(lab.LIVE_24)
    assert 38 <= len(live_24) <= 45
    assert lab.DOWN_IP not in {h.ip for h in lab.hosts}
    sparse = [h for h in lab.live_hosts(lab.SUBNET) if h not in live_24]
    assert len(sparse) >= 8
    assert {h.ip for h in lab.live_hosts(lab.OFFLINK)} >= {"198.19.0.10", "198.19.0.11"}
    macs = [h.mac for h in lab.hosts]
    assert len(set(macs)) == len(macs)
    assert any(int(m.split(":")[0], 16) & 0x02 for m in macs), "one locally administered MAC"
    assert {m[:8] for m in macs} >= {"bc:24:11", "b8:27:eb", "00:1b:21", "00:00:0c"}
    assert all(len(h.peer_if) <= 15 for h in lab.hosts)


def test_no_route_leaves_the_lab(lab: Lab) -> None:
    # A route lookup only: no packet is sent.
    for target in ("192.0.2.1", "8.8.8.8", "10.0.0.1"):
        assert lab.run("scanner", "ip", "route", "get", target, check=False).returncode != 0


def test_arp_gives_the_declared_macs(lab: Lab) -> None:
    for name in ("ssh", "f01", "f24", "s10"):
        host = lab.host(name)
        assert probes.icmp_echo(host.ip)
        neigh = lab.run("scanner", "ip", "-j", "neigh", "show", host.ip).stdout
        assert host.mac in neigh


# --- services ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "send", "expected"),
    [
        ("ssh", b"", b"SSH-2.0-OpenSSH_"),
        ("dropbear", b"", b"SSH-2.0-dropbear"),
        ("ftp", b"", b"220 (vsFTPd"),
        ("smtp", b"", b"ESMTP Postfix"),
        ("redis", b"PING\r\n", b"+PONG"),
        ("mariadb", b"", b"MariaDB"),
    ],
)
def test_tcp_service_banner(lab: Lab, host: str, send: bytes, expected: bytes) -> None:
    assert expected in _banner(lab.host(host), send)


@pytest.mark.parametrize(
    ("host", "server"), [("nginx", b"nginx/"), ("apache", b"Apache/"), ("lighttpd", b"lighttpd/")]
)
def test_http_servers(lab: Lab, host: str, server: bytes) -> None:
    status, raw = probes.http_get(lab.host(host).ip)
    assert status == 200
    assert b"Server: " + server in raw
    assert lab.host(host).fqdn.encode() in raw


def test_postgresql_answers_ssl_request(lab: Lab) -> None:
    ssl_request = struct.pack("!II", 8, 80877103)
    assert _banner(lab.host("postgres"), ssl_request) in (b"N", b"S")


def test_mosquitto_accepts_anonymous_connect(lab: Lab) -> None:
    client_id = b"lanscope-lab"
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(client_id)) + client_id
    connack = _banner(lab.host("mqtt"), bytes([0x10, len(variable)]) + variable)
    assert connack[:2] == b"\x20\x02" and connack[3] == 0


def test_snmpd_answers_sysdescr(lab: Lab) -> None:
    descr = probes.snmp_get(lab.host("snmp").ip)
    assert descr is not None and b"lanscope lab snmpd" in descr
    assert probes.snmp_get(lab.host("snmp").ip, community="wrong", timeout=0.5) is None


def test_ipv6_services(lab: Lab) -> None:
    ssh = lab.host("ssh")
    assert ssh.ip6 is not None
    assert probes.tcp_state(ssh.ip6, 22) == probes.OPEN


def test_package_version_matches_the_banner(lab: Lab) -> None:
    version = lab.package_version("openssh")  # e.g. '1:9.2p1-2+deb12u3'
    upstream = version.split(":", 1)[-1].split("-", 1)[0]
    assert f"OpenSSH_{upstream}".encode() in _banner(lab.host("ssh"))
    assert lab.package_version("nginx").split("-", 1)[0].encode() in probes.http_get(lab.host("nginx").ip)[1]


# --- DNS -----------------------------------------------------------------------


def test_dns_forward_and_reverse(lab: Lab) -> None:
    for host in (lab.host("ssh"), lab.host("f01"), lab.host("off2")):
        assert probes.dns_query(lab.DNS_IP, host.fqdn) == (0, [host.ip])
        assert probes.dns_query(lab.DNS_IP, probes.reverse_name(host.ip), probes.QTYPE_PTR) == (
            0,
            [host.fqdn],
        )
    ssh = lab.host("ssh")
    assert probes.dns_query(lab.DNS_IP, ssh.fqdn, probes.QTYPE_AAAA) == (0, [ssh.ip6])
    rcode, answers = probes.dns_query(lab.DNS_IP, f"nosuchhost.{lab.DOMAIN}")
    assert rcode == 3 and answers == []
    assert probes.tcp_state(lab.DNS_IP, 53) == probes.OPEN


# --- ICMP and port states ----------------------------------------------------------


def test_icmp_dropping_hosts_still_answer_tcp(lab: Lab) -> None:
    for name in ("noicmp", "off1"):
        host = lab.host(name)
        assert host.drops_icmp
        assert not probes.icmp_echo(host.ip, timeout=0.5)
        assert probes.tcp_state(host.ip, host.tcp_open[0]) == probes.OPEN


def test_every_other_live_host_answers_icmp(lab: Lab) -> None:
    silent = [h.name for h in lab.live_hosts() if not h.drops_icmp and not probes.icmp_echo(h.ip)]
    assert silent == []


def test_down_address_answers_nothing(lab: Lab) -> None:
    assert not probes.icmp_echo(lab.DOWN_IP, timeout=0.5)


def test_open_filtered_and_closed_ports(lab: Lab) -> None:
    host = lab.host("filtered")
    assert probes.tcp_state(host.ip, host.tcp_open[0]) == probes.OPEN
    assert probes.tcp_state(host.ip, host.tcp_filtered[0], timeout=1.0) == probes.FILTERED
    assert probes.tcp_state(host.ip, host.tcp_closed[0]) == probes.CLOSED


def test_offlink_closed_port_is_refused(lab: Lab) -> None:
    off2 = lab.host("off2")
    assert probes.tcp_state(off2.ip, off2.tcp_closed[0]) == probes.CLOSED


# --- controls ----------------------------------------------------------------------


def test_stop_and_start_service(lab: Lab) -> None:
    nginx, other = lab.host("nginx"), lab.host("noicmp")
    lab.stop_service("nginx")
    try:
        assert probes.tcp_state(nginx.ip, 80) == probes.CLOSED
        assert probes.tcp_state(other.ip, 80) == probes.OPEN, "only the primary instance stops"
    finally:
        lab.start_service("nginx")
    assert probes.http_get(nginx.ip)[0] == 200


def test_set_link_unplugs_a_host(lab: Lab) -> None:
    host = lab.host("f01")
    lab.set_link("f01", False)
    try:
        assert host not in lab.live_hosts()
        assert not probes.icmp_echo(host.ip, timeout=0.5)
    finally:
        lab.set_link("f01", True)
    assert host in lab.live_hosts()
    assert netns.wait_until(lambda: probes.icmp_echo(host.ip, timeout=0.3), 5.0)


def test_run_executes_in_the_host_namespace(lab: Lab) -> None:
    out = lab.run("ssh", "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"{lab.host('ssh').ip}/16" in out


# --- lifecycle (a second, independent lab) ---------------------------------------------


def _cli(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANSCOPE_LAB_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "tests.lab", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_up_down_leaves_nothing_behind() -> None:
    other = Lab("lt")
    pids_of_second_run: dict[int, str] = {}
    try:
        assert _cli("lt", "up").returncode == 0
        assert _cli("lt", "status").returncode == 0
        pids = netns.pids_in_netns(other.namespaces())
        assert pids, "servers run in the lab namespaces"

        # A run killed mid-way leaves namespaces and servers; the next `up` cleans them.
        (other.state_dir / "lab.json").unlink()
        assert _cli("lt", "up").returncode == 0
        assert not any(netns.is_alive(p) for p in pids), "old servers were killed"
        pids_of_second_run = netns.pids_in_netns(other.namespaces())

        down = _cli("lt", "down")
        assert down.returncode == 0, down.stderr
        assert not set(other._all_possible_namespaces()) & netns.list_netns()
        assert not other.state_dir.exists()
        assert _cli("lt", "status").returncode == 3
        assert _cli("lt", "down").returncode == 0, "down is idempotent"
    finally:
        other.down()
    assert not any(netns.is_alive(p) for p in pids_of_second_run), "no server outlives down"


def test_prefix_is_validated() -> None:
    with pytest.raises(ValueError):
        Lab("Bad-Prefix")


def test_probe_helpers_offline() -> None:
    assert probes.reverse_name("198.18.0.10") == "10.0.18.198.in-addr.arpa"
    assert ipaddress.ip_address("198.18.0.10") in ipaddress.ip_network(Lab.SUBNET)
