"""`lanscope leases` against the fake RouterOS and sample lease files, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanscope import output
from lanscope.cli import main
from tests.fakes.fixtures import ROUTER_PASSWORD, router  # noqa: F401
from tests.fakes.mikrotik import FakeRouterOS

DATA = Path(__file__).resolve().parents[1] / "data" / "leases"


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables wider than a CI terminal, so cells are not folded mid-address."""
    monkeypatch.setattr(output.stdout, "width", 220)


def write_config(tmp_path: Path, gateway_at: FakeRouterOS | None = None) -> str:
    gateway = (f"    gateway: {{host: 127.0.0.1, port: {gateway_at.port}, scheme: http, "
               f"pass: '${{X5_ROUTER_PASS}}'}}\n") if gateway_at else ""
    path = tmp_path / "config.yaml"
    path.write_text("producers:\n  dhcp_leases:\n" + gateway
                    + f"    lease_files: ['{DATA}/dnsmasq.leases']\n")
    return str(path)


def test_json_gateway_first_then_files(router: FakeRouterOS, tmp_path: Path,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X5_ROUTER_PASS", ROUTER_PASSWORD)
    assert main(["-c", write_config(tmp_path, router), "leases", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    origins = [lease["origin"] for lease in out["leases"]]
    assert origins[:3] == ["mikrotik"] * 3 and set(origins[3:]) == {"dnsmasq"}
    nas = next(lease for lease in out["leases"] if lease.get("comment") == "NAS")
    assert nas["status"] == "waiting" and nas["dynamic"] is False and nas["alive"] is False
    assert {row["address"] for row in out["arp"]} == {"192.168.9.10", "192.168.64.113",
                                                      "192.168.9.1"}
    assert out["errors"] == []


def test_flags_override_config_and_password_comes_from_env(
        router: FakeRouterOS, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_PW", ROUTER_PASSWORD)
    code = main(["-c", write_config(tmp_path), "leases", "--gateway", "127.0.0.1",
                 "--port", str(router.port), "--scheme", "http", "--user", "admin",
                 "--password-env", "ROUTER_PW", "--no-arp", "--file", str(DATA / "dhcpd.leases")])
    out = capsys.readouterr().out
    assert code == 0
    assert "10.70.0.2" in out and "192.168.2.102" in out and "router ARP" not in out
    assert "192.168.10.2" not in out                # --file replaced the configured lease files


def test_gateway_failure_is_a_warning_and_files_still_show(
        router: FakeRouterOS, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X5_ROUTER_PASS", "wrong-" + ROUTER_PASSWORD)
    assert main(["-c", write_config(tmp_path, router), "leases"]) == 0
    captured = capsys.readouterr()
    assert "gateway 127.0.0.1" in captured.err and "HTTP 401" in captured.err
    assert ROUTER_PASSWORD not in captured.err + captured.out
    assert "192.168.10.2" in captured.out


def test_nothing_configured_is_a_usage_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("producers: {dhcp_leases: {lease_files: []}}\n")
    assert main(["-c", str(config), "leases"]) == 2
    assert "give --gateway HOST or --file PATH" in capsys.readouterr().err


def test_missing_password_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", write_config(tmp_path), "leases", "--gateway", "10.0.0.1",
                 "--password-env", "X5_SURELY_UNSET"]) == 2
    assert "X5_SURELY_UNSET is not set" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["absent.leases", "absent-*.leases"])
def test_a_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert main(["leases", "--no-gateway", "--file", str(tmp_path / name), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["leases"] == [] and out["errors"] == [f"--file {tmp_path / name}: no such file"]


def test_garbage_is_an_error_and_the_good_file_still_shows(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is not a lease file\n")
    code = main(["leases", "--no-gateway", "--file", str(garbage), "--file", str(DATA / "dnsmasq.leases"),
                 "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert code == 1
    assert out["errors"] == [f"lease file {garbage} (unknown): not a lease file format lanscope knows"]
    assert {lease["origin"] for lease in out["leases"]} == {"dnsmasq"}
    assert "error: lease file" in captured.err


def test_a_cut_kea_row_is_a_warning_and_the_rest_is_kept(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    kea = tmp_path / "kea-leases4.csv"
    kea.write_text((DATA / "kea" / "kea-leases4.csv").read_text() + "10.0.10.99,aa:bb:cc:dd:ee:99,,6912")
    assert main(["leases", "--no-gateway", "--file", str(kea), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["errors"] == [] and len(out["warnings"]) == 1 and "cut mid-write" in out["warnings"][0]
    assert "10.0.10.99" not in {lease["address"] for lease in out["leases"]}
    assert "10.0.10.50" in {lease["address"] for lease in out["leases"]}
