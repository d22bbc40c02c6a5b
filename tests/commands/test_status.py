"""``lanscope status HOST``: record, ports and history of one host, found by IP, MAC or name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanscope import cli
from lanscope.commands.status import host_filter
from lanscope.errors import UsageError
from sinks.host_state import Config, HostState
from tests.factories import host_seen, port, ports_probed

MAC = "02:00:00:00:00:0a"


@pytest.fixture
async def config_path(tmp_path: Path) -> str:
    sink = HostState(Config(path=str(tmp_path / "var" / "lanscope.duckdb")))
    await sink.open()
    await sink.write([host_seen("198.18.0.10", MAC, t=0, id="a"),
                      ports_probed("198.18.0.10", MAC, [port(22, service="ssh"), port(23, service="telnet")],
                                   t=1, id="b")])
    await sink.write([ports_probed("198.18.0.10", MAC, [port(22, service="ssh")], t=60, id="c")])
    await sink.close()
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'var'}\nnats: {{url: ''}}\n")
    return str(path)


@pytest.mark.parametrize("host", ["198.18.0.10", MAC, MAC.upper().replace(":", "-")])
def test_status_finds_the_host_and_shows_ports_and_history(
        config_path: str, capsys: pytest.CaptureFixture[str], host: str) -> None:
    assert cli.main(["-c", config_path, "status", host, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["host"]["mac"] == MAC and shown["host"]["open_ports"] == ["tcp/22"]
    assert [(p["port"], p["state"]) for p in shown["ports"]] == [(22, "open"), (23, "closed")]
    latest = shown["history"][0]
    assert (latest["field"], json.loads(latest["old"]), json.loads(latest["new"])) == (
        "open_ports", ["tcp/22", "tcp/23"], ["tcp/22"]) or latest["field"] == "services"


def test_status_table_output(config_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", config_path, "status", "198.18.0.10"]) == 0
    out = capsys.readouterr().out
    assert "recent history" in out and "telnet" in out


def test_unknown_host_is_a_clear_error(config_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-c", config_path, "status", "198.18.0.77"]) == 2
    assert "no host '198.18.0.77' in the store" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["x' OR 1=1 --", "a;b", "", "-rf"])
def test_host_argument_cannot_inject_sql(host: str) -> None:
    with pytest.raises(UsageError, match="not an IP, MAC or hostname"):
        host_filter(host)


async def test_status_picks_the_host_of_the_site_asked_for(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import msgspec

    sink = HostState(Config(path=str(tmp_path / "var" / "lanscope.duckdb")))
    await sink.open()
    await sink.write([msgspec.structs.replace(host_seen("10.20.0.5", MAC, t=0, id=site), site=site)
                      for site in ("paris", "berlin")])
    await sink.close()
    path = tmp_path / "config.yaml"
    path.write_text(f"data_dir: {tmp_path / 'var'}\nnats: {{url: ''}}\n")
    for site in ("paris", "berlin"):
        assert cli.main(["-c", str(path), "status", "10.20.0.5", "--site", site, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert (shown["host"]["site"], shown["host"]["host_key"]) == (site, f"{site}/{MAC}")
    assert cli.main(["-c", str(path), "status", f"berlin/{MAC}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["host"]["site"] == "berlin"
    with pytest.raises(UsageError, match="cannot name a site"):
        host_filter("10.20.0.5", "x' OR 1=1 --")
