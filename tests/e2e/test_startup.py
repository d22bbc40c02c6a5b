"""Issue 20, case 6: start-up failures are one line with exit code 2; the data is private.

A second `lanscope run` of the same sinks on one data_dir is refused before it
touches anything, naming the process that runs them (before: a traceback
ending in DuckDB's `Could not set lock`). NATS that cannot be reached, a
DuckDB file that is not one, a data_dir that is a file: one line each, exit 2,
no traceback (unless -v). Every file lanscope keeps in data_dir — DuckDB and
its WAL, the NATS store and config, the credentials, the findings state, the
registry state and journal, the lock files — is 0600 and every directory 0700
(before: 0644 and 0755).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT
from tests.e2e.running import Running
from tests.factories import host_seen, port, ports_probed
from tests.runtime.stages import eventually

pytestmark = [pytest.mark.slow]
SINKS = ("host_state", "findings", "registry")


def lanscope(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lanscope", "-c", str(config), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("lanscope run: error:")]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(errors) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    return errors[0]


@pytest.fixture
def first(tmp_path: Path) -> Iterator[Running]:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'var'}\n")
    running = Running(config, tmp_path / "var", SINKS, tmp_path / "first.log").start()
    try:
        running.wait_serving(says="answering queries")
        yield running
    finally:
        running.stop()


async def test_a_second_run_on_the_same_data_dir_is_one_line_naming_the_first(first: Running) -> None:
    second = lanscope(first.config, "run", *(a for s in SINKS for a in ("--stage", s)))
    line = one_line_error(second)
    assert first.process is not None
    print(f"\ncase 6: second run: exit {second.returncode}: {line}")
    assert line.startswith("lanscope run: error: sinks.host_state already runs on data_dir ")
    assert f"(pid {first.process.pid}, lock " in line
    assert first.process.poll() is None                    # the first one runs on, untouched


async def test_everything_in_data_dir_is_private(first: Running) -> None:
    producer = await first.connect("arp_sweep")
    prober = await first.connect("port_probe")
    try:
        await producer.publish(host_seen())                # host_state and registry write
        await prober.publish(ports_probed(ports=[port(23, service="telnet")]))   # a finding
        data = first.data_dir
        await eventually(lambda: any(data.glob("registry.json*")), timeout=30, what="the registry's state",
                         context=first.tail)
        await eventually(lambda: (data / "findings.json").exists(), timeout=30, what="the findings state",
                         context=first.tail)
    finally:
        await producer.close()
        await prober.close()
    wrong, kinds = [], Counter[str]()
    for root, dirs, files in os.walk(first.data_dir):
        for name in dirs:
            path = Path(root) / name
            if stat.S_IMODE(path.stat().st_mode) != 0o700:
                wrong.append((str(path), oct(path.stat().st_mode)))
        for name in files:
            path = Path(root) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            kinds[_kind(path, first.data_dir)] += 1
            if mode != 0o600:
                wrong.append((str(path), oct(mode)))
    assert stat.S_IMODE(first.data_dir.stat().st_mode) == 0o700
    print(f"\ncase 6: data_dir 0700; files 0600: {dict(kinds)}; not private: {wrong}")
    assert not wrong
    for kind in ("duckdb", "nats store", "nats config", "credentials", "findings", "registry", "lock"):
        assert kinds[kind], (kind, kinds)


def _kind(path: Path, data_dir: Path) -> str:
    relative = path.relative_to(data_dir).as_posix()
    for prefix, kind in (("credentials/", "credentials"), ("nats/nats-server.conf", "nats config"),
                         ("nats/", "nats store"), ("lanscope.duckdb", "duckdb"), ("findings", "findings"),
                         ("registry", "registry")):
        if relative.startswith(prefix):
            return kind
    return "lock" if relative.endswith(".lock") else relative


def test_start_up_failures_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    cases = {}
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(f"data_dir: {tmp_path / 'a'}\nnats: {{url: 'nats://127.0.0.1:1', "
                           "connect_timeout_secs: 1}\n")
    cases["NATS unreachable"] = lanscope(unreachable, "run", "--stage", "host_state")
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "lanscope.duckdb").write_bytes(b"this is not a DuckDB file" * 100)
    corrupt = tmp_path / "corrupt.yaml"
    corrupt.write_text(f"data_dir: {broken}\n")
    cases["DuckDB file corrupt"] = lanscope(corrupt, "run", "--stage", "host_state")
    (tmp_path / "file").write_text("")
    not_a_dir = tmp_path / "notadir.yaml"
    not_a_dir.write_text(f"data_dir: {tmp_path / 'file'}\n")
    cases["data_dir is a file"] = lanscope(not_a_dir, "run", "--stage", "host_state")
    print()
    for what, result in cases.items():
        print(f"case 6: {what}: exit {result.returncode}: {one_line_error(result)}")
    verbose = lanscope(corrupt, "-v", "run", "--stage", "host_state")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr      # -v shows where
