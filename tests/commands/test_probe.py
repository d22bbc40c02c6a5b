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
