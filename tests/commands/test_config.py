"""`lanscope config check` and `config show`: every problem of a file, the effective settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lanscope.cli import main
from lanscope.config import Config, load

BAD = """\
targets: [198.18.0.300/24]
nats: {urll: nats://x:4222}
producers:
  arp_sweep: {interval_sec: 30}
schedules: {ping_sweep_secs: 60}
"""


def test_check_reports_every_problem_with_file_and_key(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    assert main(["config", "check", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{path}: nats.urll: unknown key; did you mean url?",
        f"{path}: producers.arp_sweep.interval_sec: unknown key; did you mean interval_secs?",
        f"{path}: schedules.ping_sweep_secs: moved to producers.ping_sweep.interval_secs; 0 disabled it: "
        "now producers.ping_sweep.enabled: false",
        f"{path}: targets[0]: '198.18.0.300/24': octet 4: 300 is out of range 0-255",
    ]
    assert "4 problems" in captured.err


@pytest.mark.parametrize("where", ["argument", "-c before", "-c after"])
def test_check_takes_the_file_every_way(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        where: str) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("producers: {arp_sweep: {interval_secs: 30}}\n")
    argv = {"argument": ["config", "check", str(path)], "-c before": ["-c", str(path), "config", "check"],
            "-c after": ["config", "check", "-c", str(path)]}[where]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


@pytest.mark.parametrize("as_json", [False, True])
def test_show_prints_every_key_and_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 as_json: bool) -> None:
    (tmp_path / "pw").write_text("hunter2-secret\n")
    path = tmp_path / "c.yaml"
    path.write_text("proxmox: {host: pve, token_name: t, token_value_file: pw}\n"
                    "producers: {dhcp_leases: {gateway: {host: 192.168.88.1, pass: also-secret}}}\n")
    assert main(["config", "show", str(path), *(["--json"] if as_json else [])]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "also-secret" not in out
    shown = json.loads(out) if as_json else yaml.safe_load(out)
    assert shown["proxmox"]["token_value"] == "***"
    assert shown["producers"]["dhcp_leases"]["gateway"]["pass"] == "***"
    # Every section and key, defaults filled in, in config.yaml's names: the same structs.
    assert list(shown) == list(Config.__struct_fields__)
    assert shown["sinks"]["host_state"]["presence"]["grace_secs"] == 120
    shown["proxmox"]["token_value"] = "hunter2-secret"
    shown["producers"]["dhcp_leases"]["gateway"]["pass"] = "also-secret"
    again = tmp_path / "again.yaml"
    again.write_text(json.dumps(shown))
    assert load(again) == load(path)          # what show prints loads back to the same config
