"""notify on a real nats-server: `lanscope run --stage sinks.notify` killed mid-delivery loses and
doubles nothing the user sees, and what no target takes lands in lanscope.dlq.notify, once per
event and target, while the other targets go on."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from nats.js.api import DeliverPolicy

from lanscope.config import parse
from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import H_REASON, H_STAGE, dead_letters
from lanscope.runtime.topology import STAGES
from schemas import HostChanged
from schemas import subjects as subj
from sinks.notify import build
from tests.e2e.harness import Lanscope
from tests.mqtt import Broker, collecting
from tests.runtime.stages import eventually, subject_count
from tests.runtime.test_runner import running
from tests.sinks.notify.events import changed
from tests.sinks.notify.receiver import Receiver, verify

pytestmark = [pytest.mark.nats, pytest.mark.slow]
SECRET = "bus-hmac-k3y"
DLQ = subj.DEAD_LETTERS.name


def events(count: int) -> list[HostChanged]:
    return [changed("new", id=f"crash-{i:03d}", ip=f"198.18.1.{i + 1}", mac=f"02:00:00:00:01:{i:02x}")
            for i in range(count)]


@pytest.fixture
def procs() -> Iterator[list[Lanscope]]:
    started: list[Lanscope] = []
    yield started
    for proc in started:
        proc.stop()


def config_file(tmp: Path, url: str, receiver: Receiver, broker: Broker, prefix: str) -> Path:
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp / "var"),
        "nats": {"url": url, "ack_wait_secs": 3, "shutdown_grace_secs": 3},
        "logging": {"level": "info"},
        "sinks": {"notify": {
            "retry": {"attempts": 50, "backoff_secs": 0.1, "backoff_max_secs": 0.5},
            "batch_size": 5, "flush_ms": 50,
            "targets": {
                "hook": {"webhook": {"url": f"{receiver.url}/hook", "secret": SECRET, "cloudevents": True}},
                "app": {"apprise": {"url": f"json://{receiver.url.split('//', 1)[1]}/apprise"}},
                "ha": {"mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix,
                                "discovery_prefix": f"{prefix}-ha"}},
            },
            "rules": [{"name": "everything", "targets": ["hook", "app", "ha"]}],
        }},
    }))
    return path


async def test_killed_mid_delivery_it_loses_and_doubles_nothing(
        bus: Bus, receiver: Receiver, mosquitto: Broker, tmp_path: Path, procs: list[Lanscope]) -> None:
    total, prefix = 20, f"crash-{tmp_path.name[-6:]}"
    sent = events(total)
    for event in sent:
        await bus.publish(event)
    receiver.hold("/hook", 6)          # the 6th POST gets no answer: in flight when the kill lands
    receiver.hold("/apprise", 6)
    config = config_file(tmp_path, bus.config.url, receiver, mosquitto, prefix)
    first = Lanscope(config, ("sinks.notify",), tmp_path / "first.log")
    procs.append(first)
    async with collecting(mosquitto, f"{prefix}/#") as mqtt:
        first.start()
        await eventually(lambda: len(receiver.on("/hook")) == 6 and len(receiver.on("/apprise")) == 6,
                         timeout=60, what="the 6th delivery to each HTTP target in flight",
                         context=first.tail)
        in_flight = {"hook": receiver.on("/hook")[5].header("Idempotency-Key"),
                     "app": receiver.on("/apprise")[5].json()["title"]}
        first.kill()
        # The broker publishes the killed client's last will: Home Assistant shows it unavailable.
        await eventually(lambda: mqtt.last.get(f"{prefix}/status") == b"offline", what="the last will")
        receiver.hold("/hook", 10**6)
        receiver.hold("/apprise", 10**6)
        again = Lanscope(config, ("sinks.notify",), tmp_path / "again.log")
        procs.append(again)
        again.start()

        def delivered() -> bool:
            mqtt_ids = {msgspec.json.decode(p)["id"] for p in mqtt.on(f"{prefix}/notification")}
            return (len({r.header("Idempotency-Key") for r in receiver.on("/hook")}) == total
                    and len({r.json()["title"] for r in receiver.on("/apprise")}) == total
                    and len(mqtt_ids) == total)

        await eventually(delivered, timeout=60, what="every event at every target", context=again.tail)

        async def settled() -> bool:
            info = await bus.js.consumer_info(subj.CHANGES.name, "notify")
            return info.num_pending == 0 and info.num_ack_pending == 0
        await eventually(settled, timeout=30, what="every event acknowledged", context=again.tail)
        assert again.terminate() == 0, again.tail()
    # Nothing lost: every event reached every target.
    hook, app = receiver.on("/hook"), receiver.on("/apprise")
    assert {r.header("Idempotency-Key") for r in hook} == {e.id for e in sent}
    assert all(verify(SECRET, r) and r.header("ce-id") == r.header("Idempotency-Key") for r in hook)
    # Nothing doubled but what was in flight when the process died: that one was sent again
    # under the same key (a receiver drops it by its Idempotency-Key / ce-id).
    hook_counts = Counter(r.header("Idempotency-Key") for r in hook)
    app_counts = Counter(r.json()["title"] for r in app)
    assert hook_counts[in_flight["hook"]] == 2 and set(hook_counts.values()) == {1, 2}
    assert sum(hook_counts.values()) == total + 1
    assert app_counts[in_flight["app"]] == 2 and sum(app_counts.values()) == total + 1
    ids = Counter(msgspec.json.decode(p)["id"] for p in mqtt.on(f"{prefix}/notification"))
    assert sorted(ids) == sorted(e.id for e in sent) and max(ids.values()) <= 2
    assert sum(n - 1 for n in ids.values()) <= 1        # at most the one being published at the kill


async def test_what_no_target_takes_is_dead_lettered_once_per_event_and_target(
        bus: Bus, receiver: Receiver, tmp_path: Path) -> None:
    receiver.answer("/down", *[503] * 1000)
    raw = yaml.safe_load(f"""
data_dir: {tmp_path}
sinks:
  notify:
    retry: {{attempts: 2, backoff_secs: 0.05}}
    targets:
      down: {{webhook: {{url: "{receiver.url}/down"}}}}
      up: {{webhook: {{url: "{receiver.url}/up"}}}}
    rules: [{{name: all, targets: [down, up]}}]
""")
    config = parse(raw, env={})
    stage = build(config.sinks.notify, config.stage_context(dead_letter=dead_letters(bus)))
    sent = events(3)
    async with running(bus, (STAGES["notify"], stage)):
        for event in sent:
            await bus.publish(event)
        dlq = subj.dlq_subject("notify")

        async def dead() -> bool:
            return await subject_count(bus, DLQ, dlq) == len(sent)
        await eventually(dead, timeout=30, what="one DLQ entry per event")
        await eventually(stage.idle, what="settled")
        assert len(receiver.on("/up")) == len(sent)               # the other target went on
    copies: list[Any] = []
    sub = await bus.js.subscribe(dlq, stream=DLQ, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    for _ in sent:
        copies.append(await sub.next_msg(timeout=5))
    await sub.unsubscribe()
    assert sorted(msgspec.json.decode(m.data)["id"] for m in copies) == sorted(e.id for e in sent)
    for message in copies:
        headers = message.headers or {}
        assert headers[H_STAGE] == "notify" and headers["Lanscope-Notify-Target"] == "down"
        assert headers[H_REASON].startswith("target down: POST to http://127.0.0.1:")
        # The first was tried twice; the target was failing then: one try for each after it.
        assert re.search(r"HTTP 503 Service Unavailable \(after (2 attempts|1 attempt)\)$", headers[H_REASON])
