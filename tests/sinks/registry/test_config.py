"""sinks.registry's section: the documented sample; `mode: off` is `enabled: false` now."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanscope.config import ConfigError, parse
from sinks.registry import Registry, build
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("registry")


def test_mode_off_is_no_longer_a_mode() -> None:
    with pytest.raises(ConfigError, match=r"sinks\.registry\.mode: Invalid enum value 'off'"):
        parse({"sinks": {"registry": {"mode": "off"}}}, env={})


def test_state_file_defaults_to_the_data_dir(tmp_path: Path) -> None:
    config = parse({"data_dir": str(tmp_path)}, env={})
    stage = build(config.sinks.registry, config.stage_context())
    assert isinstance(stage, Registry) and stage.config.state_file == str(tmp_path / "registry.json")
