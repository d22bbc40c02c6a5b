"""enrichers.netbios' section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("netbios")


@pytest.mark.parametrize(("section", "message"), [
    ({"timeout_ms": 0}, r"enrichers\.netbios\.timeout_ms: Expected `int` >= 1"),
    ({"refresh_secs": -1}, r"enrichers\.netbios\.refresh_secs: Expected `float` >= 0"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"enrichers": {"netbios": section}}, env={})
