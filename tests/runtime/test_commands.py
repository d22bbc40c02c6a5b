"""`lanscope provision`, `run` and `watch` as a user runs them (real processes, real nats-server)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from lanscope.commands.watch import describe, parse_kinds
from lanscope.config import NatsConfig
from lanscope.errors import UsageError
from lanscope.runtime.bus import Bus
from lanscope.runtime.locate import configured_url
from schemas import ChangeKind, FieldChange, HostChanged, HostRecord
from schemas import subjects as subj
from tests.factories import at
from tests.runtime.stages import eventually

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[2]
LANSCOPE = [sys.executable, "-m", "lanscope"]


def write_config(tmp_path: Path, url: str = "") -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\nnats:\n  url: \"{url}\"\n")
    return config


def lanscope(config: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LANSCOPE, "-c", str(config), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def changed(kind: ChangeKind = ChangeKind.CHANGED) -> HostChanged:
    record = HostRecord(host_key="02:00:00:00:00:10", ip="198.18.0.10", mac="02:00:00:00:00:10",
                        hostname="web1")
    return HostChanged(host_key=record.host_key, observed_at=at(0), source="host_state", kind=kind,
                       host=record, changes=[FieldChange(field="open_ports", old=["tcp/22"],
                                                         new=["tcp/22", "tcp/80"])])


async def wait_for_watcher(bus: Bus) -> None:
    """The ordered consumer exists once watch has subscribed (it starts from new messages)."""

    async def subscribed() -> bool:
        return any(True for _ in (await bus.js.consumers_info(subj.CHANGES.name)))
    await eventually(subscribed, what="watch's consumer")


def test_describe_is_one_line_with_old_and_new() -> None:
    line = describe(changed())
    assert "changed" in line and "198.18.0.10 02:00:00:00:00:10 web1" in line
    assert "open_ports: tcp/22 → tcp/22,tcp/80" in line and "\n" not in line


def test_describe_escapes_control_characters() -> None:
    event = changed()
    event.host.hostname = "evil\x1b[2J\nname"
    line = describe(event)
    assert "\x1b" not in line and "\n" not in line and "evil\\x1b[2J\\x0aname" in line


@pytest.mark.parametrize(("text", "kinds"), [("new", {"new"}), ("new, GONE", {"new", "gone"})])
def test_watch_kinds(text: str, kinds: set[str]) -> None:
    assert parse_kinds(text) == kinds


def test_watch_rejects_an_unknown_kind() -> None:
    with pytest.raises(UsageError, match="vanished"):
        parse_kinds("new,vanished")


async def test_provision_twice_changes_nothing(bus: Bus, tmp_path: Path) -> None:
    config = write_config(tmp_path, bus.config.url)
    first = await asyncio.to_thread(lanscope, config, "provision")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    second = await asyncio.to_thread(lanscope, config, "provision")
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout and "created" not in second.stdout and "updated" not in second.stdout


def test_run_rejects_an_unknown_stage(tmp_path: Path) -> None:
    result = lanscope(write_config(tmp_path), "run", "--stage", "enrichers.nope")
    assert result.returncode == 2
    assert "unknown stage 'enrichers.nope'" in result.stderr and "enrichers.port_probe" in result.stderr


def test_run_once_with_the_embedded_server(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = lanscope(config, "run", "--once", "--stage", "sinks.host_state")
    assert result.returncode == 0, result.stderr
    assert "(embedded, store" in result.stdout and "DuckDB:" in result.stdout
    assert "sinks.host_state" in result.stdout and "runs" in result.stdout
    assert "final counters" in result.stderr
    # The server is gone with the command.
    assert (tmp_path / "var" / "nats" / "nats-server.conf").is_file()
    assert configured_url(NatsConfig(), tmp_path / "var") is None


async def test_watch_prints_changes_as_they_happen(bus: Bus, tmp_path: Path) -> None:
    config = write_config(tmp_path, bus.config.url)
    watch = await asyncio.create_subprocess_exec(
        *LANSCOPE, "-c", str(config), "watch", "--kind", "changed", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert watch.stdout is not None and watch.stderr is not None
        banner = await asyncio.wait_for(watch.stderr.readline(), 30)
        assert b"watching" in banner
        await wait_for_watcher(bus)
        await bus.publish(changed(ChangeKind.NEW))        # filtered out by --kind
        await bus.publish(changed())
        line = (await asyncio.wait_for(watch.stdout.readline(), 30)).decode()
        assert line.split()[2] == "changed" and "open_ports" in line
    finally:
        watch.terminate()
        await asyncio.wait_for(watch.wait(), 20)
    assert watch.returncode == 0
