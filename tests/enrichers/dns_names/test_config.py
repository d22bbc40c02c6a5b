"""enrichers.dns_names' section: the documented sample; the resolver is the shared `dns:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrichers.dns_names import DnsNames, build
from lanscope.config import ConfigError, parse
from lanscope.runtime.stage import StageDisabled
from lanscope.runtime.topology import STAGES
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("dns_names")


def test_servers_must_be_addresses() -> None:
    with pytest.raises(ConfigError, match=r"dns\.servers\[1\]: 'ns1\.example' is not an IP address"):
        parse({"dns": {"servers": ["198.18.0.53", "ns1.example"]}}, env={})


def test_built_from_the_shared_resolver_unless_disabled(tmp_path: Path) -> None:
    config = parse({"dns": {"servers": ["198.18.0.53"]}, "enrichers": {"dns_names": {"cache_secs": 60}}},
                   env={})
    stage = build(config.enrichers.dns_names, config.stage_context())
    assert isinstance(stage, DnsNames) and stage.config.cache_secs == 60
    off = parse({"enrichers": {"dns_names": {"enabled": False}}}, env={})
    with pytest.raises(StageDisabled, match=r"enrichers\.dns_names\.enabled is false"):
        STAGES["dns_names"].instantiate(off.enrichers.dns_names, off.stage_context())
