"""Webhook and Apprise targets against a real HTTP receiver: what goes on the wire, how failures
are told, and that no secret reaches a log or an error."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime

import msgspec
import pytest

from lanscope.settings import Secret
from schemas import Finding, HostChanged, encode
from sinks.notify._apprise import AppriseSender
from sinks.notify._webhook import WebhookSender, signature
from sinks.notify.dispatch import DeliveryError
from sinks.notify.model import Note
from sinks.notify.targets import AppriseTarget, WebhookTarget
from tests.sinks.notify.events import changed, finding
from tests.sinks.notify.receiver import Received, Receiver, verify


def note_for(event: HostChanged | Finding, kind: str, target: str = "t") -> Note:
    return Note(key=f"{event.id}/{target}", target=target, rule="r", kind=kind, title="A *title*",
                text="plain body", markdown="**markdown** body", events=[msgspec.Raw(encode(event))],
                event_ids=[event.id], subject=event.host_key, observed_at=event.observed_at,
                created_at=datetime.now(UTC))


async def send(sender: WebhookSender | AppriseSender, note: Note) -> None:
    await sender.start()
    try:
        await sender.send(note)
    finally:
        await sender.close()


async def test_webhook_posts_the_event_signed(receiver: Receiver) -> None:
    event = changed("new")
    await send(WebhookSender("w", WebhookTarget(url=Secret(f"{receiver.url}/in"), secret=Secret("k3y"))),
               note_for(event, "new"))
    [got] = receiver.on("/in")
    assert got.body == encode(event)                         # the event as on the bus
    assert got.header("Content-Type") == "application/json"
    assert got.header("Idempotency-Key") == got.header("Lanscope-Event-Id") == event.id
    assert verify("k3y", got) and not verify("other", got)
    tampered = Received(got.path, got.headers, got.body.replace(b"new", b"old"), got.at)
    assert not verify("k3y", tampered)
    assert got.header("ce-id") is None


def test_signature_is_hmac_sha256_over_time_dot_body() -> None:
    # As README.md documents it, so a receiver in any language computes the same.
    expected = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert signature("k", b'{"a":1}', 1700000000) == f"t=1700000000,v1={expected}"


async def test_webhook_cloudevents_binary_mode(receiver: Receiver) -> None:
    event = finding("opened")
    target = WebhookTarget(url=Secret(f"{receiver.url}/ce"), cloudevents=True,
                           headers={"Authorization": Secret("Bearer tok-123456")})
    await send(WebhookSender("w", target), note_for(event, "finding_opened"))
    [got] = receiver.on("/ce")
    assert got.header("ce-specversion") == "1.0"
    assert got.header("ce-id") == event.id
    assert got.header("ce-type") == "io.lanscope.finding.opened"
    assert got.header("ce-source") == "/lanscope/notify"
    assert got.header("ce-subject") == event.host_key
    assert got.header("ce-time") == event.observed_at.isoformat().replace("+00:00", "Z")
    assert got.header("Authorization") == "Bearer tok-123456"
    assert got.json()["finding_id"] == event.finding_id      # binary mode: the body is the data


@pytest.mark.parametrize(("status", "retry"), [(500, True), (503, True), (429, True), (408, True),
                                               (400, False), (401, False), (404, False), (410, False)])
async def test_webhook_failures_say_whether_a_retry_can_help(receiver: Receiver, status: int,
                                                             retry: bool) -> None:
    receiver.answer("/x", status)
    sender = WebhookSender("w", WebhookTarget(url=Secret(f"{receiver.url}/x")))
    with pytest.raises(DeliveryError) as caught:
        await send(sender, note_for(changed(), "new"))
    assert caught.value.retry is retry and f"HTTP {status}" in str(caught.value)


async def test_webhook_errors_and_logs_keep_the_url_token_out(receiver: Receiver,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    token = "T0kenInPath9f8e7d"
    caplog.set_level(logging.DEBUG)
    good = WebhookSender("w", WebhookTarget(url=Secret(f"{receiver.url}/hooks/{token}")))
    await send(good, note_for(changed(), "new"))
    assert receiver.on(f"/hooks/{token}")
    dead = WebhookSender("w", WebhookTarget(url=Secret(f"http://127.0.0.1:1/hooks/{token}")))
    with pytest.raises(DeliveryError) as caught:
        await send(dead, note_for(changed(), "new"))
    assert token not in str(caught.value) and "127.0.0.1:1" in str(caught.value)
    assert caplog.records and token not in caplog.text        # httpx logs the request line: redacted


async def test_apprise_json_and_form_targets(receiver: Receiver) -> None:
    host = receiver.url.split("//", 1)[1]
    await send(AppriseSender("j", AppriseTarget(url=Secret(f"json://{host}/json"))),
               note_for(changed(), "new"))
    await send(AppriseSender("f", AppriseTarget(url=Secret(f"form://{host}/form"), format="markdown")),
               note_for(changed("gone"), "gone"))
    [js] = receiver.on("/json")
    posted = js.json()
    assert (posted["title"], posted["message"], posted["type"]) == ("A *title*", "plain body", "info")
    [form] = receiver.on("/form")
    assert b"markdown" in form.body and b"warning" in form.body     # markdown asked for; gone is a warning


async def test_apprise_failures_are_told_with_secrets_redacted(receiver: Receiver,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    password = "Appr1se-pa55word"
    caplog.set_level(logging.DEBUG)
    host = receiver.url.split("//", 1)[1]
    receiver.answer("/down", 500)
    sender = AppriseSender("j", AppriseTarget(url=Secret(f"json://user:{password}@{host}/down")))
    with pytest.raises(DeliveryError) as caught:
        await send(sender, note_for(changed(), "new"))
    assert str(caught.value) == ("JSON: Failed to send JSON POST notification: Internal server error., "
                                 "error=500.")
    assert caught.value.retry
    with pytest.raises(ValueError, match=r"apprise\.url: Apprise does not understand this nosuch://") as bad:
        AppriseSender("x", AppriseTarget(url=Secret(f"nosuch://{password}@host")))
    assert password not in str(bad.value)
    assert password not in caplog.text and "***" in caplog.text   # Apprise logged the URL it could not parse
