"""`lanscope arp`: ARP replies plus the neighbour table."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from lanscope.cli import main

pytestmark = pytest.mark.lab


def test_arp_default_targets_are_the_attached_subnet(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["arp", "--json", "-i", "br0", lab.LIVE_24]) == 0
    out = json.loads(capsys.readouterr().out)
    replies = {r["ip"]: r for r in out["replies"]}
    assert {ip: r["mac"] for ip, r in replies.items()} == {
        h.ip: h.mac for h in lab.live_hosts(lab.LIVE_24) if h.on_link}
    assert replies[lab.host("ssh").ip]["vendor"] == "Proxmox Server Solutions GmbH"
    for entry in out["neighbours"]:
        assert entry["ip"] not in replies and entry["state"]


def test_the_neighbour_table_is_shown_within_the_targets_only(lab: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The kernel's table holds the whole lab after a sweep of the /24; `arp 198.18.0.0/28`
    shows the part of it that the targets name, as the replies are."""
    assert main(["arp", "--json", "-i", "br0", lab.LIVE_24]) == 0       # fills the table
    capsys.readouterr()
    assert main(["arp", "--json", "-i", "br0", "198.18.0.0/28"]) == 0
    out = json.loads(capsys.readouterr().out)
    shown = [e["ip"] for e in [*out["replies"], *out["neighbours"]]]
    assert shown and all(ipaddress.ip_address(ip) in ipaddress.ip_network("198.18.0.0/28") for ip in shown)


def test_unknown_interface_finds_nothing(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["arp", "--json", "--no-neighbours", "-i", "nosuch0", lab.LIVE_24]) == 0
    assert json.loads(capsys.readouterr().out)["replies"] == []
