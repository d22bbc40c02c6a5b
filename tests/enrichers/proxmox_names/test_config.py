"""enrichers.proxmox_names' section: the documented sample; the shared proxmox section."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanscope.config import ConfigError, parse
from lanscope.runtime.stage import StageDisabled
from lanscope.runtime.topology import STAGES
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("proxmox_names")


def test_no_cluster_no_stage() -> None:
    config = parse({}, env={})
    with pytest.raises(StageDisabled, match=r"no proxmox\.host"):
        STAGES["proxmox_names"].instantiate(config.enrichers.proxmox_names, config.stage_context())


@pytest.mark.parametrize(("proxmox", "message"), [
    ({"host": "pve"}, r"proxmox\.host: set token_name/token_value or password for pve"),
    ({"host": "pve", "token_name": "t"}, r"proxmox\.token_value: required with token_name"),
])
def test_credentials_are_checked(proxmox: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"proxmox": proxmox}, env={})


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"proxmox\.token_value_file: cannot read secret file"):
        parse({"proxmox": {"token_value_file": "nope"}}, env={}, base=tmp_path)
