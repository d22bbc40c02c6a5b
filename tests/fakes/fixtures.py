"""pytest fixtures for the fake RouterOS and Proxmox servers.

Import them in a conftest.py: ``from tests.fakes.fixtures import router, ...  # noqa: F401``.
Each fixture starts a real server on 127.0.0.1 (a free port) and stops it after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .mikrotik import FakeRouterOS
from .proxmox import FakeProxmox
from .tls import SelfSigned, self_signed

ROUTER_PASSWORD = "Rtr-pa55-8f3Kq!zz"     # distinctive: tests grep for it in every output
PROXMOX_PASSWORD = "Pve-pa55-Zq71!xx"
PROXMOX_TOKEN = ("inventory@pve", "lanscope", "5a1f6c0e-2b7d-4e9a-9c3f-0d8e7b6a5c41")


@pytest.fixture
def tls_cert(tmp_path: Path) -> SelfSigned:
    return self_signed(tmp_path / "tls", "fake")


@pytest.fixture
def router() -> Iterator[FakeRouterOS]:
    with FakeRouterOS(users={"admin": ROUTER_PASSWORD}) as server:
        yield server


@pytest.fixture
def router_tls(tls_cert: SelfSigned) -> Iterator[FakeRouterOS]:
    with FakeRouterOS(users={"admin": ROUTER_PASSWORD},
                      tls=(str(tls_cert.cert_file), str(tls_cert.key_file))) as server:
        yield server


@pytest.fixture
def proxmox(tls_cert: SelfSigned) -> Iterator[FakeProxmox]:
    with FakeProxmox(tls=(str(tls_cert.cert_file), str(tls_cert.key_file)),
                     users={"root@pam": PROXMOX_PASSWORD},
                     tokens={f"{PROXMOX_TOKEN[0]}!{PROXMOX_TOKEN[1]}": PROXMOX_TOKEN[2]}) as server:
        yield server
