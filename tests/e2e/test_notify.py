"""End to end: the real pipeline on the lab, and `lanscope run --stage sinks.notify` in a process of
its own, notifying a webhook, Apprise (json://) and the lab's Mosquitto as Home Assistant sees it.

A host appears, goes (its link is unplugged) and comes back, and the lab's FTP server
opens a finding: every one of those events that a rule matches gives exactly one
notification at each target — matched by event id at the webhook and on MQTT, by kind at
Apprise (which has no id) — and nothing else is sent. Home Assistant's view follows: a
device_tracker for the host, merged by its MAC, going home, not_home, home.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from nats.js.api import DeliverPolicy

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind, Event, Finding, FindingState, HostChanged, decode
from schemas import subjects as subj
from tests.e2e.harness import Lanscope, fresh_streams
from tests.lab import Lab
from tests.mqtt import Broker, collecting
from tests.runtime.stages import eventually
from tests.sinks.notify.receiver import Receiver, receiver, verify

pytestmark = [pytest.mark.lab, pytest.mark.nats, pytest.mark.slow]
__all__ = ["receiver"]             # the fixture
SECRET = "e2e-hmac-key"
HOST = "f01"                       # a filler host: unplugged and plugged back
PIPELINE = ("arp_sweep", "ping_sweep", "port_probe", "dns_names", "mac_vendor", "presence_check",
            "host_state", "findings")


def config_text(lab: Lab, data_dir: Path, url: str, receiver: Receiver, prefix: str) -> str:
    host, ftp = lab.host(HOST), lab.host("ftp")
    notify = {
        "retry": {"attempts": 5, "backoff_secs": 0.2},
        "targets": {
            "hook": {"webhook": {"url": f"{receiver.url}/hook", "secret": SECRET}},
            "app": {"apprise": {"url": f"json://{receiver.url.split('//', 1)[1]}/apprise"}},
            "ha": {"mqtt": {"host": lab.host("mqtt").ip, "port": 1883, "topic_prefix": prefix,
                            "discovery_prefix": f"{prefix}-ha"}},
        },
        "rules": [
            {"name": "presence", "kinds": ["new", "gone", "back"], "subnets": [f"{host.ip}/32"],
             "targets": ["hook", "app", "ha"]},
            {"name": "ftp-findings", "kinds": ["finding_opened"], "subnets": [f"{ftp.ip}/32"],
             "targets": ["hook", "app", "ha"]},
        ],
    }
    return yaml.safe_dump({
        "data_dir": str(data_dir),
        "targets": ["198.18.0.0/27"],
        "scope": {"allow": [lab.SUBNET]},
        "nats": {"url": url, "ack_wait_secs": 5, "shutdown_grace_secs": 3},
        "dns": {"servers": [lab.DNS_IP]},
        "producers": {"arp_sweep": {"interval_secs": 2},
                      "ping_sweep": {"interval_secs": 2, "tcp_ports": [80], "tcp_timeout_ms": 500},
                      "neighbours": {"enabled": False}, "dhcp_leases": {"enabled": False},
                      "proxmox_guests": {"enabled": False}},
        "enrichers": {"port_probe": {"tcp": "21,22,80", "udp": "", "connect_timeout_ms": 500,
                                     "banner_timeout_ms": 1000, "reprobe_secs": 2}},
        "sinks": {"host_state": {"flush_ms": 100, "presence": {"missed_sweeps": 2, "grace_secs": 3}},
                  "notify": notify},
    })


class Run:
    def __init__(self, lab: Lab, url: str, receiver: Receiver, prefix: str, pipeline: Lanscope,
                 notify: Lanscope) -> None:
        self.lab, self.url, self.receiver, self.prefix = lab, url, receiver, prefix
        self.pipeline, self.notify = pipeline, notify
        self.events: list[Event] = []

    def logs(self) -> str:
        return f"--- pipeline\n{self.pipeline.tail()}\n--- notify\n{self.notify.tail()}"

    def matching(self) -> list[Event]:
        """The events on the bus the rules match."""
        host, ftp = self.lab.host(HOST), self.lab.host("ftp")
        return [e for e in self.events
                if (isinstance(e, HostChanged) and e.host_key == host.mac
                    and e.kind in (ChangeKind.NEW, ChangeKind.GONE, ChangeKind.BACK))
                or (isinstance(e, Finding) and e.state is FindingState.OPENED and e.ip == ftp.ip)]


@pytest.fixture
def run(lab: Lab, natsd: EmbeddedNats, receiver: Receiver, tmp_path: Path) -> Iterator[Run]:
    url = natsd.start()

    asyncio.run(fresh_streams(url))
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "config.yaml"
    config.write_text(config_text(lab, tmp_path / "var", url, receiver, prefix))
    pipeline = Lanscope(config, PIPELINE, tmp_path / "pipeline.log")
    notify = Lanscope(config, ("sinks.notify",), tmp_path / "notify.log")
    try:
        yield Run(lab, url, receiver, prefix, pipeline, notify)
    finally:
        pipeline.stop()
        notify.stop()
        lab.set_link(HOST, True)


@pytest.fixture
async def bus(run: Run) -> AsyncIterator[Bus]:
    async with await Bus.connect(NatsConfig(url=run.url), name="lanscope-e2e-notify") as connected:
        await connected.provision([])      # the streams, so the test can follow them from the start
        yield connected


async def test_new_gone_back_and_a_finding_notify_once_per_rule_everywhere(run: Run, bus: Bus) -> None:
    lab, receiver, p = run.lab, run.receiver, run.prefix
    host = lab.host(HOST)
    oid = host.mac.replace(":", "")

    async def collect(msg: Any) -> None:
        run.events.append(decode(msg.data))
    for subject in (subj.HOST_CHANGED, subj.FINDING):
        await bus.js.subscribe(subject, stream=subj.CHANGES.name, cb=collect, ordered_consumer=True,
                               deliver_policy=DeliverPolicy.ALL)

    def posted(kind: str) -> bool:
        return any(r.header("Lanscope-Kind") == kind and r.json()["host_key"] == host.mac
                   for r in receiver.on("/hook"))

    async def until(condition: Any, what: str, timeout: float = 45) -> Any:
        return await eventually(condition, timeout=timeout, what=what, interval=0.05, context=run.logs)

    broker = Broker(lab.host("mqtt").ip, 1883)
    async with collecting(broker, f"{p}/#", f"{p}-ha/#") as mqtt:
        run.notify.start()
        run.pipeline.start()
        await until(lambda: posted("new"), f"a `new` notification for {HOST}")
        await until(lambda: any(r.header("Lanscope-Kind") == "finding_opened" for r in receiver.on("/hook")),
                    "the FTP finding's notification")
        lab.set_link(HOST, False)
        try:
            await until(lambda: posted("gone"), f"{HOST} gone")
        finally:
            lab.set_link(HOST, True)
        await until(lambda: posted("back"), f"{HOST} back")
        assert run.pipeline.terminate() == 0, run.logs()

        async def drained() -> bool:
            info = await bus.js.consumer_info(subj.CHANGES.name, "notify")
            return info.num_pending == 0 and info.num_ack_pending == 0
        await until(drained, "notify caught up with the stream")
        await until(lambda: len(receiver.on("/hook")) >= len(run.matching())
                    and len(receiver.on("/apprise")) >= len(run.matching())
                    and len(mqtt.on(f"{p}/notification")) >= len(run.matching()),
                    "a notification for every matching event at every target")
        assert run.notify.terminate() == 0, run.logs()
        states = [s.decode() for s in mqtt.on(f"{p}/host/{oid}/state")]
        tracker = mqtt.last.get(f"{p}-ha/device_tracker/{p}_{oid}/config")

    matching = run.matching()
    kinds = Counter(_kind(e) for e in matching)
    assert kinds["new"] == 1 and kinds["gone"] >= 1 and kinds["back"] >= 1 and kinds["finding_opened"] >= 1
    ids = sorted(e.id for e in matching)
    # Webhook: each matching event exactly once, signed, and nothing else.
    hook = receiver.on("/hook")
    assert sorted(r.header("Idempotency-Key") for r in hook) == ids
    assert all(verify(SECRET, r) for r in hook)
    # MQTT (the Home Assistant event entity): the same.
    assert sorted(msgspec.json.decode(m)["id"] for m in mqtt.on(f"{p}/notification")) == ids
    # Apprise (no event id in a json:// post): one message per matching event, by kind.
    titles = Counter(_title_kind(r.json()["title"]) for r in receiver.on("/apprise"))
    assert titles == kinds
    # Home Assistant: a tracker merged by MAC, home, not_home while unplugged, home again.
    assert tracker is not None
    config = msgspec.json.decode(tracker)
    assert config["device"]["connections"] == [["mac", host.mac]] and config["source_type"] == "router"
    assert "not_home" in states and states[-1] == "home" and states.index("not_home") > states.index("home")


def _kind(event: Event) -> str:
    return f"finding_{event.state.value}" if isinstance(event, Finding) else event.kind.value  # type: ignore[attr-defined]


def _title_kind(title: str) -> str:
    for prefix, kind in (("New host", "new"), ("Host gone", "gone"), ("Host back", "back"),
                         ("Finding", "finding_opened")):
        if title.startswith(prefix):
            return kind
    return title
