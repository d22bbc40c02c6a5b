"""The notify sink with real targets (an HTTP receiver for webhooks and Apprise's json://):
one notification per event and target, redeliveries and restarts, retries and the DLQ,
quiet hours, rate limits and digests, the inventory, the ledger on disk."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from lanscope.config import parse
from sinks.notify import Notify, build
from sinks.notify._io import LedgerLocked, StateFileError
from tests.runtime.stages import eventually
from tests.sinks.notify.events import IP, MAC, changed, finding
from tests.sinks.notify.receiver import Receiver, verify

SECRET = "s3cret-hmac-key"


@dataclass
class DeadLetters:
    """Records what the stage dead-letters (the real DLQ is in test_on_the_bus.py)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, stage: str, payload: bytes, *, reason: str, key: str,
                       headers: Mapping[str, str] | None = None) -> None:
        self.entries.append({"stage": stage, "event": msgspec.json.decode(payload), "reason": reason,
                             "key": key, **(headers or {})})


class Clock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    tmp: Path
    receiver: Receiver
    dlq: DeadLetters = field(default_factory=DeadLetters)
    stages: list[Notify] = field(default_factory=list)

    def config(self, rules: str, *, extra: str = "", retry: str = "{attempts: 3, backoff_secs: 0.05}") -> Any:
        host = self.receiver.url.split("//", 1)[1]
        text = f"""
data_dir: {self.tmp}
sinks:
  notify:
    retry: {retry}
    targets:
      hook: {{webhook: {{url: "{self.receiver.url}/hook", secret: {SECRET}}}}}
      app: {{apprise: {{url: "json://{host}/apprise"}}}}
    rules: {rules}
{extra}"""
        return parse(yaml.safe_load(text), env={})

    async def open(self, rules: str, *, clock: Callable[[], datetime] | None = None, **kw: Any) -> Notify:
        config = self.config(rules, **kw)
        stage = build(config.sinks.notify, config.stage_context(dead_letter=self.dlq))
        if clock is not None:
            stage.clock = clock
        await stage.open()
        self.stages.append(stage)
        return stage

    async def close(self, stage: Notify) -> None:
        self.stages.remove(stage)
        await stage.close()


@pytest.fixture
async def harness(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Harness]:
    h = Harness(tmp_path, receiver)
    yield h
    for stage in list(h.stages):
        await stage.close()


async def settled(stage: Notify) -> None:
    await eventually(stage.idle, timeout=15, what="every notification settled")


ALL = "[{name: all, targets: [hook, app]}]"


async def test_one_notification_per_event_and_target_whatever_is_redelivered(harness: Harness) -> None:
    stage = await harness.open(ALL)
    new, opened = changed("new", hostname="f01.lab.test"), finding("opened")
    assert await stage.write([new, opened]) == []
    await stage.write([new])                       # a redelivery, alone
    await stage.write([opened, changed("back", id="other")])   # and within a batch
    await settled(stage)
    hook, app = harness.receiver.on("/hook"), harness.receiver.on("/apprise")
    assert sorted(r.header("Idempotency-Key") for r in hook) == sorted([new.id, opened.id, "other"])
    assert len(app) == 3 and {r.json()["title"] for r in app} >= {"New host: f01.lab.test (198.18.0.2)"}
    assert all(verify(SECRET, r) for r in hook)
    assert hook[0].json() == msgspec.json.decode(msgspec.json.encode(new))   # the event, as on the bus


async def test_first_matching_rule_per_target(harness: Harness) -> None:
    stage = await harness.open("[{name: first, kinds: [new], targets: [hook]},"
                               " {name: second, targets: [hook, app]}]")
    await stage.write([changed("new")])
    await settled(stage)
    assert [r.header("Lanscope-Rule") for r in harness.receiver.on("/hook")] == ["first"]
    assert len(harness.receiver.on("/apprise")) == 1          # the second rule still serves app


async def test_a_restart_sends_what_was_owed_under_the_same_key(harness: Harness) -> None:
    harness.receiver.answer("/hook", *[503] * 100)
    stage = await harness.open(ALL, retry="{attempts: 100, backoff_secs: 0.05}")
    event = changed("new")
    await stage.write([event])
    await eventually(lambda: len(harness.receiver.on("/hook")) >= 2, what="retries")
    await settled_app(harness)
    await harness.close(stage)                                 # owed: stays in the ledger
    harness.receiver.answer("/hook")                           # the receiver is back
    tried = len(harness.receiver.on("/hook"))
    stage = await harness.open(ALL)
    await settled(stage)
    after = harness.receiver.on("/hook")[tried:]
    assert [r.header("Idempotency-Key") for r in after] == [event.id]
    assert len(harness.receiver.on("/apprise")) == 1           # app had it: not sent again
    await stage.write([event])                                 # and a late redelivery is nothing
    await settled(stage)
    assert len(harness.receiver.on("/hook")) == tried + 1


async def settled_app(harness: Harness) -> None:
    await eventually(lambda: len(harness.receiver.on("/apprise")) >= 1, what="apprise")


async def test_a_failing_target_is_dead_lettered_and_holds_back_no_other(harness: Harness) -> None:
    harness.receiver.answer("/hook", *[500] * 100)
    stage = await harness.open(ALL)
    events = [changed("new", ip=f"198.18.0.{i}", mac=f"02:00:00:00:00:{i:02x}") for i in range(2, 5)]
    await stage.write(events)
    await settled(stage)
    assert len(harness.receiver.on("/apprise")) == 3
    # The first was tried 3 times; the target was then failing: one try each for the others.
    assert len(harness.receiver.on("/hook")) == 3 + 1 + 1
    assert [(d["stage"], d["event"]["id"], d["Lanscope-Notify-Target"]) for d in harness.dlq.entries] == [
        ("notify", e.id, "hook") for e in events]
    assert harness.dlq.entries[0]["reason"] == ("target hook: POST to http://127.0.0.1:"
                                               f"{harness.receiver.port}: HTTP 500 Internal Server Error "
                                               "(after 3 attempts)")
    assert {d["key"] for d in harness.dlq.entries} == {f"{e.id}-hook" for e in events}
    harness.receiver.answer("/hook")                 # back: the next one goes through at once
    await stage.write([changed("back")])
    await settled(stage)
    assert harness.receiver.on("/hook")[-1].json()["kind"] == "back"
    assert stage.queues["hook"].failing is False


async def test_a_refusal_is_not_retried(harness: Harness) -> None:
    harness.receiver.answer("/hook", 400)
    stage = await harness.open(ALL)
    await stage.write([changed("new")])
    await settled(stage)
    assert len(harness.receiver.on("/hook")) == 1
    assert harness.dlq.entries[0]["reason"].endswith("HTTP 400 Bad Request (not retried)")


QUIET = ("[{name: night, targets: [hook, app], quiet_hours: {start: '22:00', end: '07:00', "
         "timezone: Europe/Berlin}}]")


async def test_quiet_hours_hold_events_for_one_digest(harness: Harness) -> None:
    clock = Clock(datetime(2026, 1, 10, 22, 30, tzinfo=UTC))      # 23:30 in Berlin
    stage = await harness.open(QUIET, clock=clock)
    events = [changed("new", ip=f"198.18.0.{i}", mac=f"02:00:00:00:00:{i:02x}") for i in range(2, 5)]
    await stage.write(events)
    await settled(stage)
    assert harness.receiver.received == [] and len(stage.state.held) == 6
    clock.now = datetime(2026, 1, 11, 6, 0, 1, tzinfo=UTC)         # 07:00:01 in Berlin
    stage._wake.set()
    await eventually(lambda: len(harness.receiver.received) == 2, what="one digest per target")
    await settled(stage)
    digest = harness.receiver.on("/hook")[0]
    assert digest.json()["type"] == "notify_digest" and [e["id"] for e in digest.json()["events"]] == [
        e.id for e in events]
    assert digest.header("Lanscope-Kind") == "digest" and verify(SECRET, digest)
    app = harness.receiver.on("/apprise")[0].json()
    assert app["title"] == "3 LAN events (night, quiet hours)" and app["message"].count("\n") == 2
    await harness.close(stage)
    stage = await harness.open(QUIET, clock=clock)             # nothing is owed or held any more
    await stage.write(events)
    await settled(stage)
    assert len(harness.receiver.received) == 2 and not stage.state.held


async def test_quiet_hours_can_drop(harness: Harness) -> None:
    clock = Clock(datetime(2026, 1, 10, 22, 30, tzinfo=UTC))
    stage = await harness.open(QUIET.replace("Europe/Berlin", "Europe/Berlin, hold: false"), clock=clock)
    event = changed("new")
    await stage.write([event])
    clock.now += timedelta(hours=12)
    await stage.write([event])                                 # decided: not sent after all
    await settled(stage)
    assert harness.receiver.received == [] and not stage.state.held


async def test_a_rate_limit_holds_the_overflow_for_one_digest(harness: Harness) -> None:
    clock = Clock()
    stage = await harness.open("[{name: capped, targets: [hook], rate_limit: {max: 2, per_secs: 600}}]",
                               clock=clock)
    events = [changed("new", ip=f"198.18.0.{i}", mac=f"02:00:00:00:00:{i:02x}") for i in range(2, 7)]
    await stage.write(events)
    await settled(stage)
    assert [r.header("Idempotency-Key") for r in harness.receiver.on("/hook")] == [e.id for e in events[:2]]
    clock.now += timedelta(seconds=601)
    stage._wake.set()
    await eventually(lambda: len(harness.receiver.on("/hook")) == 3, what="the digest")
    await settled(stage)
    assert [e["id"] for e in harness.receiver.on("/hook")[2].json()["events"]] == [e.id for e in events[2:]]


async def test_digest_rules_gather_an_interval_and_a_lone_event_goes_as_itself(harness: Harness) -> None:
    clock = Clock()
    stage = await harness.open("[{name: hourly, targets: [hook], digest_secs: 3600}]", clock=clock)
    first, second = changed("new"), changed("gone", mac="02:00:00:00:00:99", ip="198.18.0.99")
    await stage.write([first])
    clock.now += timedelta(minutes=30)
    await stage.write([second])
    clock.now += timedelta(minutes=31)
    stage._wake.set()
    await eventually(lambda: len(harness.receiver.on("/hook")) == 1, what="the hourly digest")
    assert [e["id"] for e in harness.receiver.on("/hook")[0].json()["events"]] == [first.id, second.id]
    third = changed("back", at=clock.now)
    await stage.write([third])
    clock.now += timedelta(hours=2)
    stage._wake.set()
    await eventually(lambda: len(harness.receiver.on("/hook")) == 2, what="the next hour's")
    lone = harness.receiver.on("/hook")[1]
    assert lone.json()["id"] == third.id and lone.header("Idempotency-Key") == third.id


async def test_old_events_notify_nobody(harness: Harness) -> None:
    stage = await harness.open(ALL)
    old = changed("new", at=datetime.now(UTC) - timedelta(hours=2))
    await stage.write([old])
    await settled(stage)
    assert harness.receiver.received == [] and MAC in stage.state.hosts   # still folded


async def test_known_hosts_and_tags_come_from_names_leases_and_the_inventory(harness: Harness) -> None:
    inventory = harness.tmp / "inventory.yaml"
    inventory.write_text(f"- {{id: cam, mac: '{MAC}', tags: [cameras]}}\n")
    rules = ("[{name: cams, tags: [cameras], targets: [hook]},"
             " {name: strangers, known: false, targets: [app]}]")
    stage = await harness.open(rules, extra=f"    inventory: {inventory}")
    cam = changed("new")                                       # in the inventory: known, tagged
    named = changed("new", mac="02:00:00:00:00:aa", ip="198.18.0.50", hostname="nas")
    leased = changed("new", mac="02:00:00:00:00:bb", ip="198.18.0.51", dhcp_type="static")
    stranger = changed("new", mac="02:00:00:00:00:cc", ip="198.18.0.52")
    await stage.write([cam, named, leased, stranger])
    await settled(stage)
    assert [r.header("Idempotency-Key") for r in harness.receiver.on("/hook")] == [cam.id]
    assert [r.json()["title"] for r in harness.receiver.on("/apprise")] == ["New host: 198.18.0.52"]


async def test_findings_are_judged_with_their_hosts_facts(harness: Harness) -> None:
    stage = await harness.open("[{name: pi-findings, kinds: [finding_opened], vendors: [raspberry], "
                               "min_severity: medium, targets: [hook]}]")
    await stage.write([changed("new", vendor="Raspberry Pi Trading Ltd"), finding("opened"),
                       finding("opened", ip="198.18.0.77", mac="02:00:00:00:00:77"),
                       finding("opened", rule="telnet", severity="low")])
    await settled(stage)
    assert [r.json()["rule"] for r in harness.receiver.on("/hook")] == ["ftp-open"]
    assert IP in {f.ip for f in stage.state.findings.values()}


async def test_the_ledger_skips_a_torn_last_line_and_refuses_a_broken_one(harness: Harness) -> None:
    stage = await harness.open(ALL)
    await stage.write([changed("new")])
    await settled(stage)
    await harness.close(stage)
    ledger = harness.tmp / "notify" / "ledger.jsonl"
    with ledger.open("ab") as handle:
        handle.write(b'{"type":"sent","key":"x')                 # a crash mid-append
    stage = await harness.open(ALL)
    assert MAC in stage.state.hosts
    await harness.close(stage)
    ledger.write_bytes(b"not json\n" + ledger.read_bytes())
    with pytest.raises(StateFileError, match=r"ledger.jsonl: line 1: not a notify ledger record"):
        await harness.open(ALL)


async def test_one_process_per_ledger(harness: Harness) -> None:
    await harness.open(ALL)
    with pytest.raises(LedgerLocked, match="another notify process uses this ledger"):
        await harness.open(ALL)


async def test_known_by_narrows_what_makes_a_host_known(harness: Harness) -> None:
    stage = await harness.open("[{name: strangers, known: false, targets: [app]}]",
                               extra="    known_by: [inventory, static_lease]")
    named = changed("new", mac="02:00:00:00:00:aa", ip="198.18.0.50", hostname="android-5f3a")
    leased = changed("new", mac="02:00:00:00:00:bb", ip="198.18.0.51", dhcp_type="static")
    await stage.write([named, leased])
    await settled(stage)
    titles = [r.json()["title"] for r in harness.receiver.on("/apprise")]
    assert titles == ["New host: android-5f3a (198.18.0.50)"]       # a hostname no longer counts
