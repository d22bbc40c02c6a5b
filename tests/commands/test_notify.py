"""`lanscope notify test TARGET`: a sample notification to one configured target, and the reason
(with no secret in it) when the target refuses it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import msgspec
import pytest
import yaml

from lanscope.cli import main
from tests.mqtt import Broker, collecting
from tests.runtime.stages import eventually
from tests.sinks.notify.receiver import Receiver, receiver, verify

TOKEN = "Sec4et-path-t0ken"
__all__ = ["receiver"]       # the fixture


def config(tmp_path: Path, receiver: Receiver, **targets: object) -> str:
    path = tmp_path / "config.yaml"
    host = receiver.url.split("//", 1)[1]
    path.write_text(yaml.safe_dump({"sinks": {"notify": {"targets": {
        "hook": {"webhook": {"url": f"{receiver.url}/hooks/{TOKEN}", "secret": "k"}},
        "app": {"apprise": {"url": f"json://{host}/apprise"}},
        **targets}}}}))
    return str(path)


def test_a_sample_goes_to_a_webhook_and_an_apprise_target(tmp_path: Path, receiver: Receiver,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, receiver)
    assert main(["-c", path, "notify", "test", "hook"]) == 0
    assert main(["-c", path, "notify", "test", "app"]) == 0
    out = capsys.readouterr().out
    assert "sent a sample notification to hook (webhook): lanscope test: New host: lanscope-test.example" \
        in out
    [posted] = receiver.on(f"/hooks/{TOKEN}")
    assert verify("k", posted) and posted.json()["host"]["ip"] == "192.0.2.10"
    [app] = receiver.on("/apprise")
    assert app.json()["title"].startswith("lanscope test: New host: lanscope-test.example (192.0.2.10)")


def test_a_refusal_exits_non_zero_with_the_reason(tmp_path: Path, receiver: Receiver,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    receiver.answer(f"/hooks/{TOKEN}", 410)
    assert main(["-c", config(tmp_path, receiver), "notify", "test", "hook"]) == 1
    err = capsys.readouterr().err
    assert f"target hook (webhook): POST to {receiver.url}: HTTP 410 Gone" in err
    assert TOKEN not in err


def test_an_unknown_target_is_a_usage_error(tmp_path: Path, receiver: Receiver,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", config(tmp_path, receiver), "notify", "test", "pager"]) == 2
    assert "no target 'pager' under sinks.notify.targets (known: app, hook)" in capsys.readouterr().err


def test_an_mqtt_target_gets_the_notification_and_nothing_else(tmp_path: Path, receiver: Receiver,
                                                               mosquitto: Broker) -> None:
    prefix = f"cmd-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path, receiver, ha={"mqtt": {"host": mosquitto.host, "port": mosquitto.port,
                                                   "topic_prefix": prefix}})

    async def run() -> list[tuple[str, bytes]]:
        async with collecting(mosquitto, f"{prefix}/#") as seen:
            code = await asyncio.to_thread(main, ["-c", path, "notify", "test", "ha"])
            assert code == 0
            await eventually(lambda: seen.on(f"{prefix}/notification"), what="the sample")
            return list(seen.messages)

    messages = asyncio.run(run())
    assert [topic for topic, _ in messages] == [f"{prefix}/notification"]   # no status, no states
    assert msgspec.json.decode(messages[0][1])["event_type"] == "new"
