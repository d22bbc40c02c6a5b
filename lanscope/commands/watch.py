"""``lanscope watch``: host changes (and findings) as they happen.

An ephemeral ordered consumer on the CHANGES stream, starting now: nothing is
acked, nothing is left behind on the server when it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from datetime import datetime
from typing import Any

import msgspec
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_jsonl, print_line, printable
from lanscope.runtime.auth import WATCH, client_config
from lanscope.runtime.bus import Bus
from lanscope.runtime.locate import no_server_hint, pipeline_url
from schemas import ChangeKind, Event, Finding, HostChanged, check_site, decode
from schemas import subjects as subj

_KINDS = [k.value for k in ChangeKind]
_MAX_VALUE = 80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one event JSON per line")
    parser.add_argument("--kind", default=",".join(_KINDS), metavar="KINDS",
                        help=f"comma-separated change kinds to show (default: {','.join(_KINDS)})")
    parser.add_argument("--findings", action="store_true", help="also show findings opened and resolved")
    parser.add_argument("--site", default=None, metavar="SITE",
                        help="only this site's events ('' for the default site; default: every site)")


def parse_kinds(text: str) -> set[str]:
    kinds = {k.strip().lower() for k in text.split(",") if k.strip()}
    unknown = kinds - set(_KINDS)
    if unknown or not kinds:
        raise UsageError(f"--kind: unknown kind(s) {', '.join(sorted(unknown)) or '(none)'}; "
                         f"choose from {', '.join(_KINDS)}")
    return kinds


def _value(value: Any) -> str:
    if value is None or value == [] or value == "":
        return "-"
    if isinstance(value, list):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, datetime):
        text = value.isoformat(timespec="seconds")
    else:
        text = str(value)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE - 1] + "…"


def describe(event: Event) -> str:
    """One human line per event (plain text: hostnames and banners are data, no escape sequence
    reaches the terminal)."""
    return printable(_describe(event))


def _describe(event: Event) -> str:
    when = event.observed_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(event, HostChanged):
        host = event.host
        who = " ".join(part for part in (host.site and f"[{host.site}]", host.ip or "-", host.mac or "-",
                                         host.hostname or "") if part)
        changes = "; ".join(f"{c.field}: {_value(c.old)} → {_value(c.new)}" for c in event.changes)
        return f"{when}  {event.kind.value:<7}  {who}" + (f"  {changes}" if changes else "")
    if isinstance(event, Finding):
        where = (f"[{event.site}] " if event.site else "") + (event.ip or event.mac or event.host_key)
        port = f":{event.port}" if event.port else ""
        return (f"{when}  finding {event.state.value}  {where}{port}  "
                f"[{event.severity.value}] {event.rule}: {_value(event.title)}")
    return f"{when}  {type(event).__name__}  {event.host_key}"


def main(args: argparse.Namespace, config: Config) -> int:
    kinds = parse_kinds(args.kind)
    if args.site:
        try:
            check_site(args.site)
        except ValueError as exc:
            raise UsageError(f"--site: {exc}") from None
    url, namespace = pipeline_url(config.nats, config.data_dir)
    if not url:
        raise LanscopeError(no_server_hint(config.data_dir, "watch"))
    with contextlib.suppress(KeyboardInterrupt):
        where = f"{url} (network namespace {namespace})" if namespace else url
        asyncio.run(_watch(config, url, where, kinds, findings=args.findings, as_json=args.json,
                           site=args.site))
    return 0


async def _watch(config: Config, url: str, where: str, kinds: set[str], *, findings: bool,
                 as_json: bool, site: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def show(msg: Any) -> None:
        try:
            event = decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            print_line(f"undecodable event on {msg.subject}: {exc}", err=True)
            return
        if isinstance(event, HostChanged) and event.kind.value not in kinds:
            return
        if as_json:
            print_jsonl(event)
        else:
            # Plain write: one line per event whatever the width, and the text is data.
            sys.stdout.write(describe(event) + "\n")
            sys.stdout.flush()

    nats_config = client_config(config.nats, config.data_dir, WATCH)
    async with await Bus.connect(nats_config, url=url, name="lanscope-watch", role=WATCH) as bus:
        wanted = [subj.HOST_CHANGED] + ([subj.FINDING] if findings else [])
        # Every site's, or one site's (its subjects: lanscope.<site>.host.changed.> ...).
        subjects = list(subj.everywhere(*wanted)) if site is None \
            else [subj.site_subject(site, s) for s in wanted]
        for subject in subjects:
            try:
                await bus.js.subscribe(subject, stream=subj.CHANGES.name, cb=show, ordered_consumer=True,
                                       deliver_policy=DeliverPolicy.NEW)
            except NotFoundError:
                raise LanscopeError(f"no {subj.CHANGES.name} stream on {where}: the pipeline has not "
                                    "provisioned it yet (`lanscope run` does, or `lanscope provision`)"
                                    ) from None
        print_line(f"watching {', '.join(subjects)} on {where} (Ctrl-C to stop)", err=True)
        await stop.wait()
