"""enrichers.port_probe's section: the documented sample, port specs checked before a probe."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("port_probe")


@pytest.mark.parametrize(("section", "message"), [
    ({"tcp": "22,70000"}, r"enrichers\.port_probe\.tcp: port spec '22,70000': port 70000 is out of range"),
    ({"udp": "53,nosuchservice"}, r"enrichers\.port_probe\.udp: .*unknown service name 'nosuchservice'"),
    ({"top_ports": 70000}, r"enrichers\.port_probe\.top_ports: Expected `int` <= 65535"),
    ({"hosts": 0}, r"enrichers\.port_probe\.hosts: Expected `int` >= 1"),
    ({"scan_type": "fin"}, r"enrichers\.port_probe\.scan_type: Invalid enum value 'fin'"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"enrichers": {"port_probe": section}}, env={})


def test_concurrency_is_the_runners() -> None:
    config = parse({"enrichers": {"port_probe": {"concurrency": 3}}}, env={})
    assert config.stage_specs()["port_probe"].concurrency == 3
