"""`lanscope proxmox` against the fake Proxmox, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanscope import output
from lanscope.cli import main
from tests.fakes.fixtures import PROXMOX_TOKEN, proxmox, tls_cert  # noqa: F401
from tests.fakes.proxmox import FakeProxmox
from tests.fakes.tls import SelfSigned


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wider than a CI terminal, so cells are not folded mid-address."""
    monkeypatch.setattr(output.stdout, "width", 220)


def config(tmp_path: Path, pve: FakeProxmox, cert: SelfSigned, pin: str | None = None) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"proxmox:\n  host: 127.0.0.1\n  port: {pve.port}\n  user: {PROXMOX_TOKEN[0]}\n"
        f"  token_name: {PROXMOX_TOKEN[1]}\n  token_value: ${{X5_PVE_TOKEN}}\n"
        f"  tls: {{fingerprint_sha256: '{pin or cert.sha256}'}}\n")
    return str(path)


def test_json_lists_guests_with_macs_and_ips(
        proxmox: FakeProxmox, tls_cert: SelfSigned, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X5_PVE_TOKEN", PROXMOX_TOKEN[2])
    assert main(["-c", config(tmp_path, proxmox, tls_cert), "proxmox", "--json"]) == 0
    guests = {g["vm_id"]: g for g in json.loads(capsys.readouterr().out)}
    assert guests[100]["name"] == "web-01" and guests[100]["ips"] == ["198.18.0.10"]
    assert guests[100]["macs"] == ["bc:24:11:2e:c5:4a", "bc:24:11:2e:c5:4b"]
    assert guests[201]["status"] == "stopped" and guests[201]["ips"] == ["10.0.0.50"]


def test_table(proxmox: FakeProxmox, tls_cert: SelfSigned, tmp_path: Path,  # noqa: F811
               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X5_PVE_TOKEN", PROXMOX_TOKEN[2])
    assert main(["-c", config(tmp_path, proxmox, tls_cert), "proxmox"]) == 0
    out = capsys.readouterr().out
    assert "5 Proxmox guests" in out and "ct-dns" in out and "win-desktop" in out


def test_wrong_pin_is_one_clear_line(proxmox: FakeProxmox, tls_cert: SelfSigned,  # noqa: F811
                                     tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X5_PVE_TOKEN", PROXMOX_TOKEN[2])
    assert main(["-c", config(tmp_path, proxmox, tls_cert, pin="ab" * 32), "proxmox"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lanscope proxmox: error: proxmox 127.0.0.1:")
    assert "does not match the pinned" in err and PROXMOX_TOKEN[2] not in err


def test_no_host_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    assert main(["-c", str(path), "proxmox"]) == 2
    assert "no Proxmox host" in capsys.readouterr().err
