"""lanscope in the lab as a user runs it, and what watching it shows.

Shared by the end-to-end tests (``test_pipeline``, ``test_soak``, ``test_passive``)
and by the benchmarks (``percentile`` by all of them): ``lanscope run``
subprocesses, the lab configs, the ``HostChanged`` events as a subscriber
receives them (with the time each arrived), the lab's link outages, and the
judgement of a soak: which events said something that did not happen, how
long real outages took to be reported, and whether the history table says
exactly what the published events said.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import duckdb
import msgspec
from nats.js.api import DeliverPolicy

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from schemas import ChangeKind, HostChanged, decode
from schemas import subjects as subj
from tests.lab import Lab
from tests.natsd import reset_streams

ROOT = Path(__file__).resolve().parents[2]


class Lanscope:
    """One `lanscope run --stage ...` subprocess with its log file."""

    def __init__(self, config: Path, stages: tuple[str, ...], log: Path, *, verbose: bool = False) -> None:
        self.argv = [sys.executable, "-m", "lanscope", "-c", str(config), *(["-v"] if verbose else []), "run"]
        for stage in stages:
            self.argv += ["--stage", stage]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


# nats lines of a pipeline whose sink is SIGKILLed on purpose
KILLABLE = """\
  ack_wait_secs: 3             # a killed sink's batch comes back quickly
  shutdown_grace_secs: 3
"""


def lab_config(lab: Lab, data_dir: Path, url: str, nats: str = "", *, offlink: bool = True) -> str:
    """The head of a lab config: state in ``data_dir``, the lab's segments as targets and
    scope (``offlink``: the routed one too), its DNS server, NATS at ``url`` (``nats``: more
    lines of that section)."""
    targets, allow = [lab.LIVE_24], [lab.SUBNET]
    if offlink:
        targets, allow = [*targets, lab.OFFLINK], [*allow, lab.OFFLINK]
    return f"""
data_dir: {data_dir}
targets: [{", ".join(targets)}]
scope:
  allow: [{", ".join(allow)}]
nats:
  url: "{url}"
{nats}dns:
  servers: [{lab.DNS_IP}]
"""


@dataclass
class Pipeline:
    """`lanscope run` split as a user would: ``main`` (the stages given) and ``sink``
    (sinks.host_state, the DuckDB owner, so it can be SIGKILLed and restarted on its own)."""

    lab: Lab
    url: str
    db: Path
    main: Lanscope
    sink: Lanscope

    @classmethod
    def prepare(cls, lab: Lab, url: str, tmp: Path, config: str, stages: tuple[str, ...]) -> Pipeline:
        """Write the config into ``tmp``; start nothing."""
        path = tmp / "config.yaml"
        path.write_text(config)
        return cls(lab, url, tmp / "var" / "lanscope.duckdb",
                   Lanscope(path, stages, tmp / "main.log"),
                   Lanscope(path, ("sinks.host_state",), tmp / "host_state.log"))

    def stop(self) -> None:
        self.main.stop()
        self.sink.stop()

    def logs(self) -> str:
        return (f"--- {self.main.log.name}\n{self.main.tail()}\n"
                f"--- {self.sink.log.name}\n{self.sink.tail()}")


@contextmanager
def started_pipeline(lab: Lab, url: str, tmp: Path, config: Callable[[Path, str], str],
                     stages: tuple[str, ...]) -> Iterator[Pipeline]:
    """A module's pipeline on fresh streams (``config(data_dir, url)``), stopped at the end;
    the test starts its processes."""
    asyncio.run(fresh_streams(url))
    pipeline = Pipeline.prepare(lab, url, tmp, config(tmp / "var", url), stages)
    try:
        yield pipeline
    finally:
        pipeline.stop()


async def fresh_streams(url: str) -> None:
    """lanscope's streams, empty (a session's server holds earlier tests' messages)."""
    async with await Bus.connect(NatsConfig(url=url), name="lanscope-e2e-reset") as bus:
        await reset_streams(bus)
        await bus.provision([])


@dataclass
class Received:
    event: HostChanged
    subject: str
    at: float                      # wall-clock seconds when the subscriber got it


@dataclass
class ChangeLog:
    """Every HostChanged in the CHANGES stream, from its start, as a subscriber receives it."""

    received: list[Received] = field(default_factory=list)

    async def follow(self, bus: Bus) -> None:
        async def collect(msg: Any) -> None:
            event = decode(msg.data)
            assert isinstance(event, HostChanged)
            self.received.append(Received(event, msg.subject, time.time()))

        await bus.js.subscribe(subj.HOST_CHANGED, stream=subj.CHANGES.name, cb=collect,
                               ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)

    @property
    def events(self) -> list[HostChanged]:
        return [r.event for r in self.received]

    @property
    def subjects(self) -> dict[str, str]:
        """Event id -> the subject it came on."""
        return {r.event.id: r.subject for r in self.received}

    def find(self, kind: ChangeKind, host_key: str,
             where: Callable[[HostChanged], bool] = lambda e: True) -> HostChanged | None:
        """The first event of ``kind`` for ``host_key`` that ``where`` accepts."""
        return next((r.event for r in self.received if r.event.kind == kind
                     and r.event.host_key == host_key and where(r.event)), None)


async def sql(bus: Bus, query: str) -> list[dict[str, Any]] | None:
    """Rows from the running DuckDB owner over lanscope.query; None while it does not answer."""
    try:
        msg = await bus.nc.request(subj.QUERY, msgspec.json.encode({"sql": query}), timeout=3)
    except Exception:   # no responders (the sink is starting or was just killed) or a timeout
        return None
    reply = msgspec.json.decode(msg.data)
    assert "error" not in reply, reply["error"]
    return [dict(zip(reply["columns"], row, strict=True)) for row in reply["rows"]]


# ------------------------------------------------------------------------ the judgement


@dataclass
class Outage:
    """A lab host unplugged (lab.set_link) at ``down_at`` and plugged back in at ``up_at``."""

    host: str
    key: str                       # its host_key: the MAC on-link, the IP behind the router
    down_at: float
    up_at: float | None = None


@dataclass
class SoakReport:
    """What a soak showed. ``noise``: `changed` events after the warm-up, when nothing on the
    LAN changed but the outages (which are `gone`/`back`, never `changed`)."""

    events: int
    noise: list[HostChanged]                 # `changed` after the warm-up
    noise_fields: Counter[str]
    empty: list[HostChanged]                 # an event with no change, or a change to the same value
    new_after_warmup: list[HostChanged]
    false_gone: list[HostChanged]            # gone while the host was plugged in
    false_back: list[HostChanged]            # back while the host was unplugged
    own_gone: list[HostChanged]              # the scanner's own addresses gone
    gone_delays: list[float]                 # unplugged -> its `gone` arrived (seconds)
    back_delays: list[float]                 # plugged in -> its `back` arrived
    missed: list[str]                        # outages without their gone or back
    repeated: list[str]                      # outages with more than one gone or back

    def line(self) -> str:
        return (f"events {self.events}, changed-without-fact {len(self.noise)} "
                f"{dict(self.noise_fields)}, empty {len(self.empty)}, new after warm-up "
                f"{len(self.new_after_warmup)}, false gone {len(self.false_gone)}, false back "
                f"{len(self.false_back)}, own address gone {len(self.own_gone)}, outages "
                f"{len(self.gone_delays)} gone / {len(self.back_delays)} back, delays gone "
                f"{_spread(self.gone_delays)}, back {_spread(self.back_delays)}; missed {self.missed}; "
                f"repeated {self.repeated}")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank (p99 of ten values is the largest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"p50 {percentile(values, 50):.1f} s, p99 {percentile(values, 99):.1f} s, "
            f"max {max(values):.1f} s")


def judge(log: ChangeLog, outages: list[Outage], *, warm_at: float, own_keys: set[str],
          slack: float = 1.0) -> SoakReport:
    """Judge every received HostChanged against what was done to the lab."""
    by_key: dict[str, list[Outage]] = {}
    for outage in outages:
        by_key.setdefault(outage.key, []).append(outage)

    def down(key: str, when: float) -> bool:
        return any(o.down_at - slack <= when <= (o.up_at if o.up_at is not None else float("inf")) + slack
                   for o in by_key.get(key, []))

    def up(key: str, when: float) -> bool:
        return not any(o.down_at + slack < when < (o.up_at if o.up_at is not None else float("inf"))
                       - slack for o in by_key.get(key, []))

    noise: list[HostChanged] = []
    fields: Counter[str] = Counter()
    empty, new, false_gone, false_back, own_gone = [], [], [], [], []
    for item in log.received:
        event = item.event
        when = event.observed_at.timestamp()
        if not event.changes or any(c.old == c.new for c in event.changes):
            empty.append(event)
        if item.at < warm_at:
            continue
        if event.kind is ChangeKind.CHANGED:
            noise.append(event)
            fields.update(c.field for c in event.changes)
        elif event.kind is ChangeKind.NEW:
            new.append(event)
        elif event.kind is ChangeKind.GONE:
            if event.host_key in own_keys:
                own_gone.append(event)
            elif not down(event.host_key, when):
                false_gone.append(event)
        elif event.kind is ChangeKind.BACK and not up(event.host_key, when):
            false_back.append(event)
    gone_delays: list[float] = []
    back_delays: list[float] = []
    missed: list[str] = []
    repeated: list[str] = []

    def tally(outage: Outage, kind: ChangeKind, lo: float, hi: float, since: float,
              delays: list[float]) -> None:
        found = [r for r in log.received if r.event.host_key == outage.key and r.event.kind is kind
                 and lo <= r.event.observed_at.timestamp() <= hi]
        name = f"{outage.host}@{outage.down_at:.0f}"
        if found:
            delays.append(found[0].at - since)
        else:
            missed.append(f"{name}: no {kind.value}")
        if len(found) > 1:
            repeated.append(f"{name}: {len(found)} {kind.value}")

    for outage in outages:
        end = outage.up_at if outage.up_at is not None else float("inf")
        tally(outage, ChangeKind.GONE, outage.down_at - slack, end + slack, outage.down_at, gone_delays)
        if outage.up_at is not None:
            following = [o.down_at for o in by_key[outage.key] if o.down_at > outage.up_at]
            tally(outage, ChangeKind.BACK, outage.down_at + 1e-6, min(following, default=float("inf")),
                  outage.up_at, back_delays)
    return SoakReport(len(log.received), noise, fields, empty, new, false_gone, false_back, own_gone,
                      gone_delays, back_delays, missed, repeated)


def history_disagreements(db: Path, events: list[HostChanged]) -> list[str]:
    """How the history table differs from the published changes (none: one row per published
    FieldChange, carrying that HostChanged's id, and no other row). Opens the file read-only:
    the DuckDB owner must have stopped."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT event_id, field, old, new FROM history").fetchall()
    finally:
        con.close()
    stored = Counter((event_id, name, _canonical(old), _canonical(new)) for event_id, name, old, new in rows)
    published = Counter((e.id, c.field, msgspec.json.encode(c.old), msgspec.json.encode(c.new))
                        for e in events for c in e.changes)
    problems = []
    ids = [e.id for e in events]
    if len(ids) != len(set(ids)):
        problems.append(f"{len(ids) - len(set(ids))} HostChanged ids published twice")
    for key, count in (stored - published).items():
        problems.append(f"history row without its published change: {key} x{count}")
    for key, count in (published - stored).items():
        problems.append(f"published change without its history row: {key} x{count}")
    return problems


def _canonical(text: str | None) -> bytes:
    """A JSON column's value as msgspec encodes it (the events' form), to compare the two."""
    return msgspec.json.encode(msgspec.json.decode(text) if text is not None else None)
