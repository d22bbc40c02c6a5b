"""producers.ping_sweep's section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("ping_sweep")


def test_a_tcp_ping_port_out_of_range_names_its_index() -> None:
    with pytest.raises(ConfigError, match=r"producers\.ping_sweep\.tcp_ports\[1\]: Expected `int` <= 65535"):
        parse({"producers": {"ping_sweep": {"tcp_ports": [22, 70000]}}}, env={})
