"""Fake RouterOS/Proxmox servers for these tests (real sockets on 127.0.0.1)."""

from tests.fakes.fixtures import proxmox, router, router_tls, tls_cert  # noqa: F401
