"""`lanscope list`: expansion like nmap -sL, no packets."""

from __future__ import annotations

import json

import pytest

from lanscope.cli import main


def test_lists_network_and_broadcast_like_nmap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "-n", "--json", "10.0.0.0/30", "--exclude", "10.0.0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 3 and [t["ip"] for t in out["targets"]] == ["10.0.0.0", "10.0.0.2", "10.0.0.3"]


def test_prefix_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "-n", "--json", "--prefix", "10.0.10.", "--start", "1", "--end", "3"]) == 0
    assert [t["ip"] for t in json.loads(capsys.readouterr().out)["targets"]] == [
        "10.0.10.1", "10.0.10.2", "10.0.10.3"]


def test_bad_target_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "-n", "10.0.0.1-300"]) == 2
    assert "'10.0.0.1-300': octet 4: 300 is out of range 0-255" in capsys.readouterr().err


@pytest.mark.lab
def test_reverse_names_from_the_lab(lab: object, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text(f"dns:\n  servers: [{lab.DNS_IP}]\n")  # type: ignore[attr-defined]
    assert main(["-c", str(config), "list", "--json", "198.18.0.10-12"]) == 0
    names = {t["ip"]: t["hostname"] for t in json.loads(capsys.readouterr().out)["targets"]}
    assert names == {"198.18.0.10": "ssh.lab.test", "198.18.0.11": "dropbear.lab.test",
                     "198.18.0.12": "nginx.lab.test"}
