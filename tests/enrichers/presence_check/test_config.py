"""enrichers.presence_check's section: the documented sample, and its tie to host_state's confirm."""

from __future__ import annotations

import pytest

from lanscope.config import ConfigError, parse
from tests.stage_samples import check_sample


def test_sample_documents_every_key_with_its_default() -> None:
    check_sample("presence_check")


def test_zero_tries_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"enrichers\.presence_check\.tries: Expected `int` >= 1"):
        parse({"enrichers": {"presence_check": {"tries": 0}}}, env={})


def test_disabling_the_check_needs_gone_without_confirmation() -> None:
    with pytest.raises(ConfigError, match=r"sinks\.host_state\.presence\.confirm: true needs "
                                          r"enrichers\.presence_check, which is disabled"):
        parse({"enrichers": {"presence_check": {"enabled": False}}}, env={})
    config = parse({"enrichers": {"presence_check": {"enabled": False}},
                    "sinks": {"host_state": {"presence": {"confirm": False}}}}, env={})
    assert not config.sinks.host_state.presence.confirm
