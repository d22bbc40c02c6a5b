"""`lanscope interfaces` (read-only)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lanscope.cli import main


def test_json_lists_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["interfaces", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lo = next(i for i in out["interfaces"] if i["name"] == "lo")
    assert "127.0.0.1/8" in lo["ipv4"] and "127.0.0.0/8" in out["attached_private"]


@pytest.mark.lab
def test_scanner_namespace_bridge(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["interfaces", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    br0 = next(i for i in out["interfaces"] if i["name"] == "br0")
    assert br0["ipv4"] == [f"{lab.SCANNER_IP}/16"] and br0["driver"] == "bridge"
    assert br0["mac"] == "02:1a:5c:00:00:01" and br0["state"] == "up"
    assert out["local_ip"] == lab.SCANNER_IP               # no default route: the fallback
