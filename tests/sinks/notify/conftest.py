"""Fixtures of the notify tests: a real HTTP receiver, events, and the stage built from YAML."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sinks.notify.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server
