"""Fixtures of the command tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A config whose scope allows the lab (198.18.0.0/15 is not RFC 1918)."""
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text("scope:\n  allow: [198.18.0.0/15, 198.19.0.0/24]\n")
    return str(path)
