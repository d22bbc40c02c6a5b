"""sinks.findings' section: the documented sample, and values checked before the sink opens."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("findings")


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"sinks": {"findings": {"min_openssh": "new", "static_ranges": ["10.0.0.0/8", "10.1/40"],
                                      "dhcp_servers": ["dhcp.lan"],
                                      "gateways": {"192.168.1.1": "not-a-mac", "gw": "aa:bb:cc:dd:ee:ff"}}}},
              env={})
    assert [p.split(": ", 2)[1] for p in caught.value.problems] == [
        "sinks.findings.min_openssh", "sinks.findings.static_ranges[1]", "sinks.findings.dhcp_servers[0]",
        "sinks.findings.gateways.192.168.1.1", "sinks.findings.gateways.gw"]
