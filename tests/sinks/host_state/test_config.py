"""sinks.host_state's section: the documented sample; its batch size and flush reach the runner."""

from __future__ import annotations

from pathlib import Path

from lanscope.config import parse
from sinks.host_state import HostState, build
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("host_state")


def test_the_file_defaults_to_the_data_dir(tmp_path: Path) -> None:
    config = parse({"data_dir": str(tmp_path)}, env={})
    assert config.duckdb_path == tmp_path / "lanscope.duckdb"
    stage = build(config.sinks.host_state, config.stage_context())
    assert isinstance(stage, HostState) and stage.config.path == str(tmp_path / "lanscope.duckdb")


def test_batch_size_and_flush_come_from_the_section() -> None:
    config = parse({"sinks": {"host_state": {"batch_size": 123, "flush_ms": 50,
                                             "presence": {"missed_sweeps": 5}}}}, env={})
    spec = config.stage_specs()["host_state"]
    assert (spec.batch_size, spec.flush_ms) == (123, 50)
    assert config.sinks.host_state.presence.missed_sweeps == 5
    assert config.sinks.host_state.presence.grace_secs == 120
