"""producers.mdns' section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("mdns")


@pytest.mark.parametrize(("section", "message"), [
    ({"resolve_timeout_ms": 0}, r"producers\.mdns\.resolve_timeout_ms: Expected `int` >= 1"),
    ({"interfaces": "eth0"}, r"producers\.mdns\.interfaces: Expected `array`, got `str`"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"producers": {"mdns": section}}, env={})
