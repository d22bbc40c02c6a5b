"""End to end on a real nats-server: fake gateway leases -> HostSeen on the bus, and a Proxmox
guest name -> the host's record in DuckDB (dhcp_leases -> proxmox_names -> host_state)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import duckdb
import pytest

from lanscope.runtime.bus import Bus
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.stage import StageContext
from lanscope.runtime.topology import STAGES
from lanscope.settings import ProxmoxConfig, Secret, TlsConfig
from producers.dhcp_leases import Config, GatewayConfig
from schemas import HostSeen, decode
from schemas import subjects as subj
from tests.fakes.fixtures import PROXMOX_TOKEN, ROUTER_PASSWORD
from tests.fakes.mikrotik import FakeRouterOS
from tests.fakes.proxmox import FakeProxmox
from tests.fakes.tls import SelfSigned

pytestmark = pytest.mark.nats

GUEST_LEASE = {".id": "*77", "address": "198.18.0.10", "mac-address": "BC:24:11:2E:C5:4A",
               "server": "lab", "status": "bound", "expires-after": "9m59s", "last-seen": "3s",
               "active-address": "198.18.0.10", "active-mac-address": "BC:24:11:2E:C5:4A",
               "host-name": "web01-dhcp", "dynamic": "true", "blocked": "false",
               "disabled": "false", "comment": "VM on pve1"}


async def _messages(bus: Bus, subject: str) -> list[Any]:
    psub = await bus.js.pull_subscribe(subject, stream=subj.FACTS.name)
    try:
        return [decode(m.data) for m in await psub.fetch(100, timeout=2)]
    finally:
        await psub.unsubscribe()


async def test_leases_reach_the_bus_and_guest_names_the_host_record(
        bus: Bus, router: FakeRouterOS, proxmox: FakeProxmox, tls_cert: SelfSigned,
        tmp_path: Path) -> None:
    router.leases.append(GUEST_LEASE)
    # Built as `lanscope run` builds them: each stage's section plus the shared settings.
    pve = ProxmoxConfig(host="127.0.0.1", port=proxmox.port, user=PROXMOX_TOKEN[0],
                        token_name=PROXMOX_TOKEN[1], token_value=Secret(PROXMOX_TOKEN[2]),
                        tls=TlsConfig(fingerprint_sha256=tls_cert.sha256))
    ctx = StageContext(data_dir=tmp_path, proxmox=pve)
    gateway = GatewayConfig(host="127.0.0.1", port=router.port, scheme="http",
                            password=Secret(ROUTER_PASSWORD))
    specs = [STAGES["dhcp_leases"], STAGES["proxmox_names"], STAGES["host_state"]]
    sections = [Config(interval_secs=0, gateway=gateway, lease_files=[]), STAGES["proxmox_names"].config(),
                STAGES["host_state"].config()]
    await bus.provision(specs)
    runner = Runner(bus, RunnerOptions(once=True, fetch_timeout_secs=0.2, grace_secs=3))
    for spec, section in zip(specs, sections, strict=True):
        runner.add(spec, spec.instantiate(section, ctx), flush_ms=spec.flush_ms)
    db = tmp_path / "lanscope.duckdb"
    await asyncio.wait_for(runner.run(), 60)

    seen = {e.ip: e for e in await _messages(bus, "lanscope.host.seen.dhcp")
            if isinstance(e, HostSeen)}
    bound = seen["10.70.0.2"]
    assert bound.id and bound.alive and bound.evidence == "lease:bound"
    assert bound.lease is not None and bound.lease.dynamic is False
    assert (bound.lease.expires_after_secs, bound.lease.last_seen_secs) == (1443, 357)
    assert seen["192.168.88.20"].lease.comment == "NAS"  # type: ignore[union-attr]
    assert not seen["192.168.88.20"].alive
    arp = await _messages(bus, "lanscope.host.seen.router_arp")
    assert {e.ip for e in arp} == {"192.168.9.10", "192.168.64.113", "192.168.9.1"}

    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(
            "SELECT vm_name, vm_id, vm_type, vm_node, vm_status, dhcp_status, dhcp_comment "
            "FROM hosts WHERE host_key = 'bc:24:11:2e:c5:4a'").fetchone()
    assert row == ("web-01", 100, "qemu", "pve1", "running", "bound", "VM on pve1")
