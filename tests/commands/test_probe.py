"""`lanscope probe HOST` against the lab."""

from __future__ import annotations

import json

import pytest

from lanscope.cli import main
from tests.lab import Lab

pytestmark = pytest.mark.lab


def test_probe_table(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg, "probe", lab.host("ssh").ip, "-p", "20-25", "--no-udp"]) == 0
    out = capsys.readouterr().out
    assert "22/tcp" in out and "OpenSSH" in out and "open" in out
    assert "OS guess: Debian" in out


def test_probe_json(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    host = lab.host("filtered")
    assert main(["-c", cfg, "probe", host.ip, "-p", "80,8081,8082", "--no-udp", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    states = {p["port"]: p["state"] for p in result["ports"]}
    assert states == {80: "open", 8081: "filtered", 8082: "closed"}
    assert next(p for p in result["ports"] if p["port"] == 80)["product"] == "nginx"


def test_probe_rejects_a_range(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg, "probe", "198.18.0.10-12", "-p", "22"]) == 2
    assert "one host" in capsys.readouterr().err


def test_probe_rejects_a_bad_port_spec(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg, "probe", lab.host("ssh").ip, "-p", "22-x"]) == 2
    assert "22-x" in capsys.readouterr().err


def test_named_ports_are_all_that_is_probed(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`-p 8443` probed 8443/tcp and the six default UDP ports; -sU adds UDP (8443/udp)."""
    ip = lab.host("ssh").ip
    assert main(["-c", cfg, "probe", ip, "-p", "8443", "--json", "--all"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scanned"] == ["tcp:8443"]
    assert [(p["protocol"], p["port"]) for p in result["ports"]] == [("tcp", 8443)]
    assert main(["-c", cfg, "probe", ip, "-p", "8443", "-sU", "--json", "--all"]) == 0
    assert [(p["protocol"], p["port"]) for p in json.loads(capsys.readouterr().out)["ports"]] == [
        ("tcp", 8443), ("udp", 8443)]
    assert main(["-c", cfg, "probe", ip, "--json", "--all"]) == 0       # nothing named: defaults
    assert {p["protocol"] for p in json.loads(capsys.readouterr().out)["ports"]} == {"tcp", "udp"}


def test_dropbear_banner_shows_its_greeting_only(lab: Lab, cfg: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Dropbear sends its KEXINIT packet right after the greeting: the table showed
    `SSH-2.0-dropbear_2022.83\\r\\n\\x00\\x00\\x01\\xfc...`."""
    assert main(["-c", cfg, "probe", lab.host("dropbear").ip, "-p", "22"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "22/tcp" in line)
    assert row.rstrip(" │").endswith("SSH-2.0-dropbear_2022.83")
    assert "\\x00" not in out and "\\r\\n" not in out
