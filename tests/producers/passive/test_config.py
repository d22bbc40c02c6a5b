"""producers.passive's section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("passive")


@pytest.mark.parametrize(("section", "message"), [
    ({"max_events_per_sec": 0}, r"producers\.passive\.max_events_per_sec: Expected `int` >= 1"),
    ({"coalesce_secs": -1}, r"producers\.passive\.coalesce_secs: Expected `float` >= 0"),
    ({"interfaces": "eth0"}, r"producers\.passive\.interfaces: Expected `array`, got `str`"),
    ({"promisc": True}, r"producers\.passive\.promisc: unknown key; did you mean promiscuous\?"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"producers": {"passive": section}}, env={})
