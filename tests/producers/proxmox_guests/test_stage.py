"""The proxmox_guests producer: known guests as sightings, nothing while Proxmox is down."""

from __future__ import annotations

from enrichers.proxmox_names._io import ProxmoxClient
from lanscope.settings import ProxmoxConfig, TlsConfig
from producers.proxmox_guests import Config, ProxmoxGuests
from schemas import HostSeen, encode
from tests.factories import T0
from tests.fakes.fixtures import PROXMOX_TOKEN
from tests.fakes.proxmox import FakeProxmox
from tests.fakes.tls import SelfSigned


def make(pve: FakeProxmox, cert: SelfSigned) -> ProxmoxGuests:
    settings = ProxmoxConfig(host="127.0.0.1", port=pve.port, user=PROXMOX_TOKEN[0],
                             token_name=PROXMOX_TOKEN[1], token_value=PROXMOX_TOKEN[2],
                             tls=TlsConfig(ca_file=str(cert.cert_file)), timeout_secs=2)
    return ProxmoxGuests(Config(), fetch_guests=ProxmoxClient(settings).fetch_guests, host="127.0.0.1",
                         now=lambda: T0)


async def test_guests_become_sightings(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    events = await make(proxmox, tls_cert).sweep()
    assert all(isinstance(e, HostSeen) and e.source == "proxmox" for e in events)
    pairs = {(e.mac, e.ip): e for e in events if isinstance(e, HostSeen)}
    assert set(pairs) == {
        ("bc:24:11:2e:c5:4a", "198.18.0.10"), ("bc:24:11:2e:c5:4b", None),
        ("a6:43:11:00:00:65", None), ("e6:c8:cf:00:01:02", None),
        ("bc:24:11:80:25:32", "198.18.0.53"), ("bc:24:11:80:25:32", "fd00::35"),
        ("aa:bb:cc:dd:ee:ff", "10.0.0.50"),
    }
    web = pairs[("bc:24:11:2e:c5:4a", "198.18.0.10")]
    assert web.alive and web.hostname == "web-01" and web.evidence == "proxmox:running"
    assert web.guest is not None and web.guest.vm_id == 100 and web.host_key == web.mac
    stopped = pairs[("aa:bb:cc:dd:ee:ff", "10.0.0.50")]
    assert not stopped.alive and stopped.guest.status == "stopped"  # type: ignore[union-attr]
    for event in events:
        encode(event)


async def test_proxmox_down_yields_no_sightings(proxmox: FakeProxmox, tls_cert: SelfSigned) -> None:
    stage = make(proxmox, tls_cert)
    assert await stage.sweep()
    proxmox.fail = (401, "No ticket")
    assert await stage.sweep() == []
    assert await stage.sweep() == []          # backing off: not asked again
    assert proxmox.count("/cluster/resources") == 2
