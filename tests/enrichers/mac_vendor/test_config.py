"""enrichers.mac_vendor's section: the documented sample."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("mac_vendor")


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"enrichers\.mac_vendor\.reannounce_secs: Expected `float` >= 0"):
        parse({"enrichers": {"mac_vendor": {"reannounce_secs": -1}}}, env={})
