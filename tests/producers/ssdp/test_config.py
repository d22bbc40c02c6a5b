"""producers.ssdp's section: the documented sample, and the rules its types state."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("ssdp")


@pytest.mark.parametrize(("section", "message"), [
    ({"search_secs": 0}, r"producers\.ssdp\.search_secs: Expected `float` > 0"),
    ({"fetches": 0}, r"producers\.ssdp\.fetches: Expected `int` >= 1"),
])
def test_bad_values_name_the_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"producers": {"ssdp": section}}, env={})
