"""The proxmoxer client against a real fake Proxmox (HTTPS, self-signed) on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest

from enrichers.proxmox_names import ProxmoxError
from enrichers.proxmox_names._io import ProxmoxClient
from lanscope.settings import ProxmoxConfig, TlsConfig
from tests.fakes.fixtures import PROXMOX_PASSWORD, PROXMOX_TOKEN
from tests.fakes.proxmox import FakeProxmox
from tests.fakes.tls import SelfSigned

USER, TOKEN_NAME, TOKEN_SECRET = PROXMOX_TOKEN


def token_settings(pve: FakeProxmox, cert: SelfSigned, **changes: object) -> ProxmoxConfig:
    fields: dict[str, object] = {"host": "127.0.0.1", "port": pve.port, "user": USER,
                                 "token_name": TOKEN_NAME, "token_value": TOKEN_SECRET,
                                 "tls": TlsConfig(ca_file=str(cert.cert_file)),
                                 "timeout_secs": 3.0}
    fields.update(changes)
    return ProxmoxConfig(**fields)  # type: ignore[arg-type]


def password_settings(pve: FakeProxmox, cert: SelfSigned, **changes: object) -> ProxmoxConfig:
    fields: dict[str, object] = {"user": "root@pam", "token_name": None, "token_value": None,
                                 "password": PROXMOX_PASSWORD}
    return token_settings(pve, cert, **{**fields, **changes})


async def test_token_auth_lists_guests_with_macs_and_ips(proxmox: FakeProxmox,
                                                         tls_cert: SelfSigned,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="enrichers")
    guests = {g.guest.vm_id: g for g in await ProxmoxClient(token_settings(proxmox,
                                                                           tls_cert)).fetch_guests()}
    assert sorted(guests) == [100, 101, 102, 200, 201]
    web = guests[100]
    assert (web.guest.name, web.guest.vm_type, web.guest.node, web.guest.status) == (
        "web-01", "qemu", "pve1", "running")
    assert web.macs == ["bc:24:11:2e:c5:4a", "bc:24:11:2e:c5:4b"] and web.ips == ["198.18.0.10"]
    assert guests[101].macs == ["a6:43:11:00:00:65"] and guests[101].ips == []   # agent down
    assert guests[200].ips == ["198.18.0.53", "fd00::35"]                         # LXC interfaces
    assert guests[201].ips == ["10.0.0.50"] and guests[201].guest.status == "stopped"  # static ip=
    # A guest without a running agent is normal: no warning, and stopped guests are not asked.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert proxmox.count(r"/qemu/102/agent") == 0 and proxmox.count(r"/lxc/201/interfaces") == 0
    assert proxmox.count(r"/qemu/101/agent") == 1


async def test_ticket_auth(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    guests = await ProxmoxClient(password_settings(proxmox, tls_cert)).fetch_guests()
    assert len(guests) == 5 and proxmox.count(r"/access/ticket$") == 1


@pytest.mark.parametrize("auth", ["token", "password"])
async def test_pinned_fingerprint(proxmox: FakeProxmox, tls_cert: SelfSigned, auth: str) -> None:
    make = token_settings if auth == "token" else password_settings
    pinned = TlsConfig(fingerprint_sha256=tls_cert.sha256)
    assert len(await ProxmoxClient(make(proxmox, tls_cert, tls=pinned)).fetch_guests()) == 5
    before = len(proxmox.requests)
    wrong = TlsConfig(fingerprint_sha256="12" * 32)
    with pytest.raises(ProxmoxError, match="does not match the pinned"):
        await ProxmoxClient(make(proxmox, tls_cert, tls=wrong)).fetch_guests()
    assert len(proxmox.requests) == before        # no request (no password, no token) was sent


@pytest.mark.parametrize(("change", "message"), [
    ({"token_value": "00000000-wrong"}, r"HTTP 401 authentication failure \(check the user"),
    ({"tls": TlsConfig()}, r"certificate verification failed: self-signed certificate"),
])
async def test_errors_name_the_host_never_the_secret(
        proxmox: FakeProxmox, tls_cert: SelfSigned, change: dict[str, object],
        message: str) -> None:
    with pytest.raises(ProxmoxError, match=message) as caught:
        await ProxmoxClient(token_settings(proxmox, tls_cert, **change)).fetch_guests()
    assert str(caught.value).startswith("proxmox 127.0.0.1: ")
    assert TOKEN_SECRET not in str(caught.value)


async def test_wrong_password(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    with pytest.raises(ProxmoxError, match=r"login failed for user 'root@pam'") as caught:
        await ProxmoxClient(password_settings(proxmox, tls_cert, password="nope")).fetch_guests()
    assert "nope" not in str(caught.value)


async def test_reason_phrase_is_the_message(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    proxmox.fail = (503, "Service Unavailable: pveproxy restarting")
    with pytest.raises(ProxmoxError, match=r"HTTP 503 Service Unavailable: pveproxy restarting"):
        await ProxmoxClient(token_settings(proxmox, tls_cert)).fetch_guests()


async def test_hidden_guests_and_per_guest_403(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    proxmox.hidden = {100}                        # a privilege-separated token sees fewer guests
    guests = await ProxmoxClient(token_settings(proxmox, tls_cert)).fetch_guests()
    assert 100 not in {g.guest.vm_id for g in guests}


async def test_unreachable(tls_cert: SelfSigned) -> None:
    with FakeProxmox(tls=(str(tls_cert.cert_file), str(tls_cert.key_file))) as gone:
        port = gone.port
    settings = ProxmoxConfig(host="127.0.0.1", port=port, user=USER, token_name=TOKEN_NAME,
                               token_value=TOKEN_SECRET, timeout_secs=1.0)
    with pytest.raises(ProxmoxError, match=rf"cannot connect to 127.0.0.1:{port}"):
        await ProxmoxClient(settings).fetch_guests()
