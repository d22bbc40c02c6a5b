"""producers.arp_sweep's section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("arp_sweep")


@pytest.mark.parametrize(("section", "message"), [
    ({"interval_secs": 0}, r"producers\.arp_sweep\.interval_secs: Expected `float` > 0"),
    ({"max_prefix_bits": 40}, r"producers\.arp_sweep\.max_prefix_bits: Expected `int` <= 32"),
    ({"interfaces": "eth0"}, r"producers\.arp_sweep\.interfaces: Expected `array`, got `str`"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"producers": {"arp_sweep": section}}, env={})
