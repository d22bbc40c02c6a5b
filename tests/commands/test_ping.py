"""`lanscope ping`: every live host, MACs right, ICMP droppers found, the down address not."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from lanscope.cli import main


@pytest.mark.lab
def test_ping_finds_every_live_host(lab: Any, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text(f"scope:\n  allow: [{lab.OFFLINK}]\ndns:\n  servers: [{lab.DNS_IP}]\n"
                      "producers:\n  ping_sweep:\n    tcp_timeout_ms: 500\n")
    assert main(["-c", str(config), "ping", "--json", lab.LIVE_24, lab.OFFLINK]) == 0
    out = json.loads(capsys.readouterr().out)
    hosts = {h["ip"]: h for h in out["hosts"]}
    swept = (ipaddress.ip_network(lab.LIVE_24), ipaddress.ip_network(lab.OFFLINK))
    expected = [h for h in lab.live_hosts() if any(ipaddress.ip_address(h.ip) in n for n in swept)]
    assert {h.ip for h in expected} <= set(hosts)
    for host in expected:
        if host.on_link:
            assert hosts[host.ip]["mac"] == host.mac and hosts[host.ip]["rtt_ms"] is not None
            if not host.drops_icmp:
                assert hosts[host.ip]["ttl"] == 64
    assert lab.DOWN_IP not in hosts
    off1 = hosts[lab.host("off1").ip]                       # drops ICMP, off-link: TCP ping
    assert off1["source"] == "tcp_ping" and off1["rtt_ms"] is not None
    assert hosts[lab.host("noicmp").ip]["source"] == "arp"
    assert hosts[lab.host("ssh").ip]["hostname"] == "ssh.lab.test"
    assert hosts[lab.host("ssh").ip]["vendor"] == lab.host("ssh").vendor


@pytest.mark.lab
def test_public_target_refused_in_the_lab(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ping", "8.8.8.8"]) == 2
    assert "pass --allow-public" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("unshare") is None or sys.platform != "linux", reason="needs unshare")
def test_lab_range_refused_where_not_attached_before_any_packet() -> None:
    """In a fresh network namespace with only loopback, nothing could leave anyway; the
    command must stop at the scope check (exit 2, the flag named), not at a socket error."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a network namespace here")
    result = subprocess.run(["unshare", "-n", sys.executable, "-m", "lanscope", "ping", "198.18.0.10"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "198.18.0.10 is not a private address attached to this machine; pass --allow-public" \
        in result.stderr
