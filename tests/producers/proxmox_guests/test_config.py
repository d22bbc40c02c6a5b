"""producers.proxmox_guests' section: the documented sample; the shared proxmox section."""

from __future__ import annotations

import pytest

from lanscope.config import parse
from lanscope.runtime.stage import StageDisabled
from lanscope.runtime.topology import STAGES
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("proxmox_guests")


@pytest.mark.parametrize(("raw", "reason"), [
    ({}, "no proxmox.host"),
    ({"proxmox": {"host": "pve", "token_name": "t", "token_value": "v"},
      "producers": {"proxmox_guests": {"enabled": False}}}, "producers.proxmox_guests.enabled is false"),
])
def test_not_built_without_a_cluster_or_when_disabled(raw: dict[str, object], reason: str) -> None:
    config = parse(raw, env={})
    with pytest.raises(StageDisabled, match=reason):
        STAGES["proxmox_guests"].instantiate(config.producers.proxmox_guests, config.stage_context())
