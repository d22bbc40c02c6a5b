"""enrichers.snmp's section: the documented sample, credentials as secrets, off without one."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrichers.snmp import Snmp, build
from lanscope.config import ConfigError, parse
from lanscope.runtime.stage import StageDisabled
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("snmp")


def test_without_a_credential_the_stage_does_not_run() -> None:
    config = parse({}, env={})
    with pytest.raises(StageDisabled, match="no SNMP credential"):
        build(config.enrichers.snmp, config.stage_context())


def test_the_community_can_come_from_a_file_and_never_shows(tmp_path: Path) -> None:
    secret = tmp_path / "community"
    secret.write_text("s3cret\n")
    config = parse({"enrichers": {"snmp": {"community_file": str(secret)}}}, env={})
    assert config.enrichers.snmp.community == "s3cret"
    assert "s3cret" not in repr(config.enrichers.snmp)
    assert isinstance(build(config.enrichers.snmp, config.stage_context()), Snmp)


@pytest.mark.parametrize(("section", "message"), [
    ({"v3": {"user": "x", "auth_protocol": "sha1"}},
     r"enrichers\.snmp\.v3\.auth_protocol: Invalid enum value"),
    ({"v3": {"auth_key": "k"}}, r"enrichers\.snmp\.v3\.user: required"),
    ({"v3": {"user": "x", "priv_key": "k"}}, r"enrichers\.snmp\.v3\.priv_key: privacy needs authentication"),
    ({"timeout_ms": 0}, r"enrichers\.snmp\.timeout_ms: Expected `int` >= 1"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"enrichers": {"snmp": section}}, env={})
