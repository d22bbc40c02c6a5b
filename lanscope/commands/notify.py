"""``lanscope notify test TARGET``: send a sample notification to one configured target.

The sample is a "new host" event for a documentation address (192.0.2.10),
rendered with the default templates and sent once, without retries, the way the
notify sink sends (the same sender, secrets from the same config). An MQTT target
gets only the notification: availability, discovery and states are the running
stage's. Exit 0 when the target took it, 1 with the reason when it did not.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime

import msgspec

from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import stdout
from schemas import ChangeKind, HostChanged, HostRecord, encode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # A positional action, not nested subparsers: -c/-v after the command stay the command's.
    parser.add_argument("action", choices=["test"],
                        help="test: send a sample notification to one target of sinks.notify.targets")
    parser.add_argument("target", help="the target's name under sinks.notify.targets")


def sample(target: str) -> tuple[HostChanged, str]:
    """A "new host" event for the sample, and its notification key."""
    event_id = f"lanscope-test-{uuid.uuid4().hex[:12]}"
    host = HostRecord(host_key="02:00:00:00:00:0a", mac="02:00:00:00:00:0a", ip="192.0.2.10",
                      hostname="lanscope-test.example", vendor="(a sample: no such host)", active=True,
                      open_ports=["tcp/22"])
    event = HostChanged(id=event_id, host_key=host.host_key, observed_at=datetime.now(UTC),
                        source="lanscope-test", kind=ChangeKind.NEW, host=host,
                        evidence="lanscope notify test")
    return event, f"{event_id}/{target}"


def main(args: argparse.Namespace, config: Config) -> int:
    from sinks.notify import make_sender
    from sinks.notify.dispatch import DeliveryError
    from sinks.notify.model import HostFacts, Note
    from sinks.notify.render import Renderer
    from sinks.notify.rules import Rule

    targets = config.sinks.notify.targets
    if args.target not in targets:
        known = ", ".join(sorted(targets)) or "none configured"
        raise UsageError(f"no target {args.target!r} under sinks.notify.targets (known: {known})")
    try:
        sender = make_sender(args.target, targets[args.target])
    except ValueError as exc:
        raise LanscopeError(str(exc)) from None
    event, key = sample(args.target)
    renderer = Renderer(Rule(name="lanscope-test", targets=[args.target]))
    host = renderer.host(HostFacts.of(event), event.host_key, known=False, tags=frozenset())
    title, text, md = renderer.event(event, "new", host)
    note = Note(key=key, target=args.target, rule="lanscope-test", kind="new",
                title=f"lanscope test: {title}", text=text, markdown=md,
                events=[msgspec.Raw(encode(event))], event_ids=[event.id], subject=event.host_key,
                observed_at=event.observed_at, created_at=event.observed_at)

    async def send() -> None:
        await sender.start()
        try:
            await sender.send(note)
        finally:
            await sender.close()

    try:
        asyncio.run(send())
    except DeliveryError as exc:
        raise LanscopeError(f"target {args.target} ({sender.kind}): {exc}") from None
    stdout.print(f"sent a sample notification to {args.target} ({sender.kind}): {note.title}", markup=False)
    return 0

