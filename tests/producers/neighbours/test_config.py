"""producers.neighbours' section: the documented sample, and a misspelt key."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("neighbours")


def test_a_misspelt_key_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"producers\.neighbours\.ipv7: unknown key; did you mean ipv6\?"):
        parse({"producers": {"neighbours": {"ipv7": False}}}, env={})
