"""MQTT targets on a real Mosquitto: Home Assistant discovery as documented, retained states and
counts, availability, HA's birth message, and notifications for the event entity."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import pytest
import yaml

from lanscope.config import parse
from sinks.notify import Notify, build
from tests.mqtt import Broker, collecting
from tests.runtime.stages import eventually
from tests.sinks.notify.events import IP, MAC, changed, finding

NOTIFY_RULE = "[{name: to-ha, kinds: [new, finding_opened], targets: [ha]}]"


class Setup:
    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp = tmp
        self.broker = broker
        self.prefix = f"lanscope-{uuid.uuid4().hex[:8]}"
        self.discovery = f"ha-{uuid.uuid4().hex[:8]}"
        self.node = self.prefix            # the unique_id prefix: the topic prefix, already safe

    async def stage(self, rules: str = "[]", **mqtt: Any) -> Notify:
        target = {"host": self.broker.host, "port": self.broker.port, "topic_prefix": self.prefix,
                  "discovery_prefix": self.discovery, **mqtt}
        notify = {"targets": {"ha": {"mqtt": target}}, "rules": yaml.safe_load(rules),
                  "retry": {"attempts": 2, "backoff_secs": 0.05}}
        config = parse({"data_dir": str(self.tmp), "sinks": {"notify": notify}}, env={})
        stage = build(config.sinks.notify, config.stage_context())
        await stage.open()
        return stage


@pytest.fixture
async def setup(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Setup]:
    yield Setup(tmp_path, mosquitto)


def doc(payload: bytes) -> Any:
    return msgspec.json.decode(payload)


async def test_discovery_states_counts_and_availability(setup: Setup) -> None:
    stage = await setup.stage()
    d, p, node = setup.discovery, setup.prefix, setup.node
    mac12 = MAC.replace(":", "")
    try:
        await stage.write([changed("new", hostname="f01.lab.test", vendor="Raspberry Pi Trading Ltd"),
                           changed("new", mac=None, ip="198.19.0.10"), finding("opened")])
        tracker = f"{d}/device_tracker/{node}_{mac12}/config"
        async with collecting(setup.broker, f"{d}/#", f"{p}/#") as first:
            await eventually(lambda: doc(first.last.get(f"{p}/stats", b"{}")).get("hosts_total") == 2,
                             what="the counts")
            await eventually(lambda: tracker in first.last and f"{p}/host/{mac12}/state" in first.last,
                             what="the tracker")
        async with collecting(setup.broker, f"{d}/#", f"{p}/#") as seen:    # what a late subscriber gets
            await eventually(lambda: len(seen.last) >= len(first.last), what="the retained messages")
        assert doc(seen.last[f"{p}/stats"]) == {"hosts_online": 2, "hosts_total": 2, "open_findings": 1}
        config = doc(seen.last[tracker])
        assert config == {
            "name": None, "unique_id": f"{node}_{mac12}", "object_id": f"{node}_{mac12}",
            "default_entity_id": f"device_tracker.{node.replace('-', '_')}_{mac12}",
            "state_topic": f"{p}/host/{mac12}/state", "json_attributes_topic": f"{p}/host/{mac12}/attributes",
            "payload_home": "home", "payload_not_home": "not_home", "source_type": "router",
            "availability_topic": f"{p}/status", "qos": 1,
            "device": {"name": "f01.lab.test", "connections": [["mac", MAC]],
                       "manufacturer": "Raspberry Pi Trading Ltd"},
            "origin": {"name": "lanscope", "sw_version": config["origin"]["sw_version"]}}
        # Retained, so Home Assistant finds them whenever it starts.
        retained = (tracker, f"{p}/host/{mac12}/state", f"{p}/stats", f"{p}/status")
        assert all(seen.retained[topic] for topic in retained)
        assert seen.last[f"{p}/host/{mac12}/state"] == b"home"
        assert seen.last[f"{p}/status"] == b"online"
        attributes = doc(seen.last[f"{p}/host/{mac12}/attributes"])
        assert (attributes["ip"], attributes["mac"], attributes["host_name"]) == (IP, MAC, "f01.lab.test")
        # A host without a MAC cannot be merged by connection: its own identifier.
        offlink = doc(seen.last[f"{d}/device_tracker/{node}_ip-198-19-0-10/config"])
        assert offlink["device"] == {"name": "198.19.0.10", "identifiers": [f"{node}_ip-198-19-0-10"]}
        # The lanscope device: counts and open findings as sensors, notifications as an event entity.
        sensors = {t.split("/")[2]: doc(v) for t, v in seen.last.items() if t.startswith(f"{d}/sensor/")}
        assert {s["value_template"] for s in sensors.values()} == {
            "{{ value_json.hosts_online }}", "{{ value_json.hosts_total }}", "{{ value_json.open_findings }}"}
        assert all(s["state_topic"] == f"{p}/stats" and s["device"]["identifiers"] == [f"{node}_lanscope"]
                   for s in sensors.values())
        assert sensors[f"{node}_open_findings"]["json_attributes_topic"] == f"{p}/findings"
        assert doc(seen.last[f"{p}/findings"])["findings"][0]["title"] == "FTP server exposed"
        event_entity = doc(seen.last[f"{d}/event/{node}_notifications/config"])
        assert event_entity["state_topic"] == f"{p}/notification" and "gone" in event_entity["event_types"]

        # Gone: not_home and one online fewer; Home Assistant restarting gets everything again.
        async with collecting(setup.broker, f"{d}/#", f"{p}/#") as live:
            await eventually(lambda: tracker in live.last, what="retained on subscribe")
            live.messages.clear()
            await stage.write([changed("gone", active=False, hostname="f01.lab.test",
                                       vendor="Raspberry Pi Trading Ltd")])
            await eventually(lambda: live.on(f"{p}/host/{mac12}/state") == [b"not_home"], what="not_home")
            await eventually(lambda: doc(live.last[f"{p}/stats"])["hosts_online"] == 1, what="one online")
            assert live.on(tracker) == []                # the config did not change: not sent again
            async with aiomqtt.Client(setup.broker.host, setup.broker.port) as ha:
                await ha.publish(f"{d}/status", b"online")
            await eventually(lambda: live.on(tracker), what="discovery again after Home Assistant's birth")
    finally:
        await stage.close()
    async with collecting(setup.broker, f"{p}/status") as after:
        await eventually(lambda: after.last.get(f"{p}/status") == b"offline", what="offline after a stop")


async def test_notifications_fire_the_event_entity(setup: Setup) -> None:
    stage = await setup.stage(NOTIFY_RULE, trackers="none")
    p = setup.prefix
    try:
        async with collecting(setup.broker, f"{p}/#", f"{setup.discovery}/#") as seen:
            await eventually(lambda: seen.last.get(f"{p}/status") == b"online", what="online")
            event = changed("new", hostname="cam-1")
            await stage.write([event, changed("gone", mac="02:00:00:00:00:09", ip="198.18.0.9")])
            await eventually(lambda: seen.on(f"{p}/notification"), what="the notification")
            await eventually(stage.idle, what="settled")
        [payload] = seen.on(f"{p}/notification")
        message = doc(payload)
        assert message["event_type"] == "new" and message["id"] == event.id
        assert message["title"] == "New host: cam-1 (198.18.0.2)" and message["event"]["id"] == event.id
        assert not seen.retained[f"{p}/notification"]
        assert not [t for t in seen.last if "/device_tracker/" in t]      # trackers: none
    finally:
        await stage.close()


async def test_a_broker_that_is_not_there_dead_letters_after_the_retries(setup: Setup) -> None:
    setup.broker = Broker("127.0.0.1", 1)
    stage = await setup.stage(NOTIFY_RULE, connect_timeout_secs=1)
    try:
        await stage.write([changed("new")])
        await eventually(stage.idle, what="given up")
        assert not stage.state.pending
    finally:
        await stage.close()
