"""The data directory: private modes while a command runs, one process per sink (issue 20, case 6)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lanscope.errors import StartupError
from lanscope.runtime.datadir import StageLocks, private
from lanscope.runtime.topology import STAGES


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_tightens_what_is_there_and_restores_the_umask(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "nats").mkdir(parents=True)
    (data / "lanscope.duckdb").write_text("")
    os.chmod(data, 0o755)
    os.chmod(data / "nats", 0o755)
    os.chmod(data / "lanscope.duckdb", 0o644)
    before = os.umask(0o022)
    try:
        with private(data):
            (data / "new.json").write_text("{}")        # created while a command runs
            assert os.umask(0o077) == 0o077
        assert os.umask(0o022) == 0o022                  # restored: tests and dashboards go on as before
    finally:
        os.umask(before)
    assert (mode(data), mode(data / "nats")) == (0o700, 0o700)
    assert (mode(data / "lanscope.duckdb"), mode(data / "new.json")) == (0o600, 0o600)


def test_a_data_dir_that_is_a_file_is_a_one_line_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupError, match=r"cannot create data_dir .*file: File exists"), \
            private(tmp_path / "file"):
        pass


def test_a_sink_runs_once_per_data_dir_and_the_error_names_the_holder(tmp_path: Path) -> None:
    first = StageLocks(tmp_path).take([STAGES["host_state"], STAGES["port_probe"]])
    try:
        assert (tmp_path / "host_state.lock").read_text() == f"{os.getpid()}\n"
        assert not (tmp_path / "port_probe.lock").exists()     # stateless stages scale: no lock
        with pytest.raises(StartupError, match=rf"sinks.host_state already runs on data_dir .* \(pid "
                                               rf"{os.getpid()}, lock .*host_state.lock\)"):
            StageLocks(tmp_path).take([STAGES["findings"], STAGES["host_state"]])
        StageLocks(tmp_path).take([STAGES["findings"]]).release()   # the failed take let findings go
    finally:
        first.release()
    StageLocks(tmp_path).take([STAGES["host_state"]]).release()     # free again once released
