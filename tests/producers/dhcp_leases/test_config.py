"""producers.dhcp_leases' section: the documented sample, the gateway's secret and TLS pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanscope.config import ConfigError, parse
from lanscope.runtime.stage import StageContext, StageDisabled
from lanscope.settings import Secret
from producers.dhcp_leases import build
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("dhcp_leases")


def test_password_from_a_file_is_a_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    config = parse({"producers": {"dhcp_leases": {"gateway": {"host": "192.168.88.1", "pass_file": "pw"}}}},
                   env={}, base=tmp_path)
    gateway = config.producers.dhcp_leases.gateway
    assert gateway.password == "s3cret" and isinstance(gateway.password, Secret)
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(("gateway", "message"), [
    ({"tls": {"fingerprint_sha256": "12:34"}},
     r"producers\.dhcp_leases\.gateway\.tls\.fingerprint_sha256: fingerprint_sha256 must be 64 hex"),
    ({"port": 0}, r"producers\.dhcp_leases\.gateway\.port: Expected `int` >= 1"),
    ({"scheme": "ftp"}, r"producers\.dhcp_leases\.gateway\.scheme: Invalid enum value 'ftp'"),
])
def test_bad_gateway_values_name_the_key(gateway: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"producers": {"dhcp_leases": {"gateway": gateway}}}, env={})


def test_no_gateway_and_no_lease_files_is_disabled(tmp_path: Path) -> None:
    config = parse({"producers": {"dhcp_leases": {"lease_files": []}}}, env={})
    with pytest.raises(StageDisabled, match=r"no gateway\.host and no lease_files"):
        build(config.producers.dhcp_leases, StageContext(data_dir=tmp_path))
