"""Benchmark: HostSeen/PortsProbed through NATS JetStream into DuckDB, against bare publishes.

    .venv/bin/python -m bench.pipeline [--events 20000] [--runs 3] [--rate 10000] [--secs 5]
                                       [--sinks host_state,findings,registry] [--layout one|each]
                                       [--latency-mix new,known] [--hosts 5000] [--change-share 0.01]

Starts its own nats-server (the embedded binary, loopback only, temporary
store). Every party is its own process, as in a deployment: the publisher
(this module with ``--role publish``), the sinks (the real ``lanscope run
--stage ...`` CLI, all sinks in one process with ``--layout one``, the
default, or one process per sink with ``--layout each``) and this controller,
which only watches consumer state and times. In the same run:

1. bare publish rate: the workload published with nothing consuming, the way
   lanscope's producers publish (``Bus.publish_many``: pipelined, up to 512
   PubAcks outstanding, every message with its ``Nats-Msg-Id``); and, for
   reference, one message at a time waiting for each PubAck (``publish_bytes``);
2. pipeline throughput: the same workload published the same pipelined way
   while the sinks run; events/s = events / (time from the first publish until
   the consumer that feeds host_state has acked the last one; with ``--layout
   one`` it is shared with findings, so both have committed it). The lag of
   sinks fed by other consumers is reported too;
3. latency, one phase per ``--latency-mix`` (both by default), events published
   at --rate events/s for --secs, each stamped ``observed_at`` when it is
   published; for each *changing* event, the time until the ``HostChanged`` of
   its host arrives at a subscriber; median and p99, and the throughput the
   pipeline achieved in that phase:

   - ``new`` (worst case): every event is a sighting of a host never seen
     before, so every event is a change (kind new) and takes host_state's
     slowest path (new record, history rows, host/history/outbox appends);
   - ``known`` (a LAN under observation): --hosts hosts (ARP sighting and a
     port snapshot each) are created and drained *before* the clock starts;
     the stream is then re-sightings of random known hosts (45 % ARP, 45 %
     ICMP by IP only, 10 % port snapshots equal to the host's ports) in which
     --change-share of the events (every 1/share-th, in turn: port 80 closes
     or opens, a new host appears, a DNS name changes) produces a HostChanged.
     Only those are timed; a HostChanged that no change explains is counted
     as spurious (there should be none).

Events are encoded (with their deterministic ids) before the clock starts, in
every phase alike. Sends no packets to any network: everything is NATS on
127.0.0.1 and files in a temporary directory.
Goal (issue 6): pipeline >= 1/2 the bare publish rate; p99 < 1 s at 10,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from bench._workload import known_hosts, messages, publish_role
from lanscope.config import Config, NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.topology import STAGES, sink_feeds
from schemas.subjects import DEAD_LETTERS, DLQ, FACTS
from tests.e2e.harness import percentile

SINKS = ("host_state", "findings", "registry")
_POLL_SECS = 0.02
_LAUNCH = [sys.executable, "-m"]


async def run_publisher(url: str, *extra: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *_LAUNCH, "bench.pipeline", "--role", "publish", "--url", url, *extra,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"publisher failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------- the sinks' processes


class Sinks:
    """`lanscope run --stage ...` in one process, or one per sink; stopped with SIGTERM."""

    def __init__(self, url: str, work: Path, args: argparse.Namespace) -> None:
        sinks, layout, flush_ms = args.sinks, args.layout, args.flush_ms
        self.verbose = ["-vv"] if args.verbose else []
        self.profile = args.profile
        self.dir = Path(tempfile.mkdtemp(dir=work, prefix="sinks-"))
        config = {"data_dir": str(self.dir), "nats": {"url": url},
                  "sinks": {"host_state": {"flush_ms": flush_ms, "compact_secs": args.compact_secs}}}
        self.config = self.dir / "config.yaml"
        self.config.write_text(json.dumps(config))   # JSON is YAML
        self.groups = [list(sinks)] if layout == "one" else [[s] for s in sinks]
        # The consumers the sinks read through: sinks of one process share one per stream.
        self.feeds = [f for group in self.groups for f in sink_feeds(STAGES[name] for name in group)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def durable(self, sink: str, stream: str = FACTS.name) -> str:
        """The consumer that feeds ``sink`` from ``stream``."""
        return next(f.spec.durable for f in self.feeds if f.stream == stream and sink in f.members)

    def start(self) -> None:
        for number, group in enumerate(self.groups):
            argv = [*_LAUNCH, "lanscope", "-c", str(self.config), *self.verbose, "run"]
            for name in group:
                argv += ["--stage", name]
            if self.profile:   # py-spy (pip install py-spy): samples of the thread holding the GIL
                spy = Path(sys.executable).parent / "py-spy"
                argv = [str(spy), "record", "--gil", "-r", "250", "--format", "raw", "-o",
                        str(self.dir / f"run-{number}.prof"), "--", *argv]
            log = (self.dir / f"run-{number}.log").open("wb")
            self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    async def ready(self, bus: Bus, deadline_secs: float = 60) -> None:
        """Every consumer of the sinks has a pull request waiting."""
        end = time.monotonic() + deadline_secs
        while time.monotonic() < end:
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a sink process exited; see {self.dir}/run-*.log")
            try:
                waiting = [(await bus.js.consumer_info(f.stream, f.spec.durable)).num_waiting
                           for f in self.feeds]
                if all(w and w > 0 for w in waiting):
                    return
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise TimeoutError("the sinks did not start")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                if self.profile:   # py-spy and lanscope (its own process group) both stop on SIGINT
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


# ---------------------------------------------------------------------- the controller


def cpu_secs(pid: int | None) -> float:
    """User + system CPU seconds of a process (and its reaped children) so far; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def drained_at(bus: Bus, durable: str, stream: str, since: float, expect: int,
                     deadline_secs: float = 600) -> float:
    """Wall time when the consumer had acked everything (at least `expect` messages delivered)."""
    end = time.monotonic() + deadline_secs
    while time.monotonic() < end:
        info = await bus.js.consumer_info(stream, durable)
        delivered = info.delivered.stream_seq if info.delivered else 0
        if delivered >= expect and info.num_pending == 0 and info.num_ack_pending == 0:
            return time.time()
        await asyncio.sleep(_POLL_SECS)
    raise TimeoutError(f"{durable} did not drain {stream}")


async def reset(bus: Bus) -> None:
    for info in await bus.js.streams_info():
        if info.config.name:
            await bus.js.delete_stream(info.config.name)


async def bare_rate(bus: Bus, url: str, n: int, mode: str, salt: str) -> float:
    await reset(bus)
    await bus.provision([])
    result = await run_publisher(url, "--events", str(n), "--mode", mode, "--salt", salt)
    return result["events"] / result["secs"]


class PipelineRun(NamedTuple):
    rate: float                # events/s into DuckDB
    lag: float                 # seconds the slowest other sink finished after host_state
    cpu: dict[str, float]      # CPU seconds per event and process, microseconds


async def pipeline_rate(bus: Bus, url: str, args: argparse.Namespace, work: Path,
                        salt: str, server_pid: int | None) -> PipelineRun:
    await reset(bus)
    sinks = Sinks(url, work, args)
    sinks.start()
    try:
        await sinks.ready(bus)
        before = {"nats-server": cpu_secs(server_pid),
                  "sinks": sum(cpu_secs(p.pid) for p in sinks.procs)}
        pub = asyncio.create_task(run_publisher(url, "--events", str(args.events), "--salt", salt))
        while not pub.done():   # the stream exists before the publisher starts; wait for its first message
            await asyncio.sleep(_POLL_SECS)
            info = await bus.js.stream_info(FACTS.name)
            if info.state.messages:
                break
        fed = sinks.durable("host_state")
        done = await drained_at(bus, fed, FACTS.name, 0, args.events)
        result = await pub
        others = [await drained_at(bus, f.spec.durable, FACTS.name, 0, 0) for f in sinks.feeds
                  if f.stream == FACTS.name and f.spec.durable != fed]
        lag = max([t - done for t in others], default=0.0)
        await no_dead_letters(bus)
        used = {"publisher": result["cpu"], "nats-server": cpu_secs(server_pid) - before["nats-server"],
                "sinks": sum(cpu_secs(p.pid) for p in sinks.procs) - before["sinks"]}
        cpu = {k: v / args.events * 1e6 for k, v in used.items()}
        return PipelineRun(args.events / (done - result["start"]), max(lag, 0.0), cpu)
    finally:
        sinks.stop()


class _Changed(msgspec.Struct):
    host_key: str


class Latency(NamedTuple):
    latencies: list[float]     # seconds, one per changing event that got its HostChanged
    changes: int               # changing events published
    spurious: int              # HostChanged that no changing event explains
    offered: float             # events/s the publisher sent
    achieved: float            # events/s host_state got through (first publish .. last ack)
    events: int


async def settle(bus: Bus, sinks: Sinks, expect: int) -> None:
    """host_state acked `expect` facts, and every sink caught up with everything published
    (none of it dead-lettered: a workload the sinks refuse would measure nothing)."""
    await drained_at(bus, sinks.durable("host_state"), FACTS.name, 0, expect)
    for feed in sinks.feeds:
        await drained_at(bus, feed.spec.durable, feed.stream, 0, 0)
    await no_dead_letters(bus)


async def no_dead_letters(bus: Bus) -> None:
    dead = (await bus.js.stream_info(DEAD_LETTERS.name)).state.messages
    if dead:
        last = (await bus.js.get_last_msg(DEAD_LETTERS.name, DLQ)).headers or {}
        raise RuntimeError(f"{dead} events were dead-lettered, the last by {last.get('Lanscope-Stage')}: "
                           f"{last.get('Lanscope-Dlq-Reason')} (the workload is wrong, or a sink)")


async def latency(bus: Bus, url: str, args: argparse.Namespace, work: Path, mix: str) -> Latency:
    """Per changing event, seconds from its publish to its host's HostChanged (see the docstring)."""
    await reset(bus)
    sinks = Sinks(url, work, args)
    sinks.start()
    decoder = msgspec.json.Decoder(_Changed)
    arrivals: dict[str, list[float]] = {}

    async def on_changed(msg: object) -> None:
        now = time.time()
        arrivals.setdefault(decoder.decode(msg.data).host_key, []).append(now)  # type: ignore[attr-defined]

    try:
        await sinks.ready(bus)
        salt = f"lat{time.time()}"
        before = 0
        if mix == "known":   # created and drained before the clock starts
            preload = messages(known_hosts(args.hosts, salt))
            await bus.publish_many(preload)
            before = len(preload)
            await settle(bus, sinks, before)
        sub = await bus.nc.subscribe("lanscope.host.changed.>", cb=on_changed)
        result = await run_publisher(url, "--rate", str(args.rate), "--secs", str(args.secs),
                                     "--salt", salt, "--mix", mix, "--hosts", str(args.hosts),
                                     "--change-share", str(args.change_share))
        events = int(result["events"])
        done = await drained_at(bus, sinks.durable("host_state"), FACTS.name, 0, before + events)
        await no_dead_letters(bus)
        changes = result["changes"]
        end = time.monotonic() + 10
        while sum(map(len, arrivals.values())) < len(changes) and time.monotonic() < end:
            await asyncio.sleep(0.05)
        await sub.unsubscribe()
        latencies: list[float] = []
        for key, at in changes:   # the first HostChanged of that host after the change was sent
            times = arrivals.get(key, [])
            hit = next((k for k, t in enumerate(times) if t >= at), None)
            if hit is not None:
                latencies.append(times.pop(hit) - at)
        spurious = sum(map(len, arrivals.values()))
        return Latency(latencies, len(changes), spurious, events / result["secs"],
                       events / (done - result["start"]), events)
    finally:
        sinks.stop()



def report(mix: str, lat: Latency, args: argparse.Namespace) -> None:
    what = ("new hosts (every event a change)" if mix == "new" else
            f"sightings of {args.hosts:,} known hosts, {args.change_share:.1%} changes")
    print(f"latency, {mix}: {lat.events:,} {what} at {args.rate:,.0f}/s for {args.secs:g} s "
          f"(offered {lat.offered:,.0f}/s, pipeline achieved {lat.achieved:,.0f}/s): ", end="")
    if not lat.latencies:
        print("no HostChanged received")
        return
    missing = lat.changes - len(lat.latencies)
    lost = f", {missing} changes without one" if missing else ""
    p99 = percentile(lat.latencies, 99)
    print(f"{len(lat.latencies):,} HostChanged timed{lost}, {lat.spurious} spurious; median "
          f"{statistics.median(lat.latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {max(lat.latencies) * 1000:.0f} ms (goal p99 < 1000 ms)", flush=True)


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="lanscope-bench-"))
    server = EmbeddedNats(work / "nats")
    url = server.start()
    try:
        bus = await Bus.connect(NatsConfig(url=url), name="bench")
        try:
            bare, sync, piped, lags = [], [], [], []
            for run in range(args.runs):
                salt = f"r{run}-{time.time()}"
                bare.append(await bare_rate(bus, url, args.events, "window", salt))
                sync.append(await bare_rate(bus, url, max(args.events // 4, 1), "sync", salt))
                measured = await pipeline_rate(bus, url, args, work, salt, server.pid)
                piped.append(measured.rate)
                lags.append(measured.lag)
                cpu = ", ".join(f"{k} {v:.0f}" for k, v in measured.cpu.items())
                print(f"run {run + 1}: bare pipelined {bare[-1]:,.0f} ev/s, bare one-at-a-time "
                      f"{sync[-1]:,.0f} ev/s, pipeline {piped[-1]:,.0f} ev/s "
                      f"(other sinks done {measured.lag:.2f} s later; CPU us/event: {cpu})", flush=True)
            if args.runs:   # --runs 0: the latency phases alone
                b, s, p = statistics.median(bare), statistics.median(sync), statistics.median(piped)
                print(f"\nmedian of {args.runs} ({args.events:,} events, sinks {','.join(args.sinks)}, "
                      f"layout {args.layout}):\n"
                      f"  bare publish, pipelined (as lanscope's producers publish): {b:,.0f} events/s\n"
                      f"  bare publish, one PubAck at a time:                       {s:,.0f} events/s\n"
                      f"  pipeline (NATS -> sinks -> DuckDB):                       {p:,.0f} events/s\n"
                      f"  ratio to pipelined bare {p / b:.2f} (goal >= 0.50); "
                      f"to one-at-a-time bare {p / s:.2f}", flush=True)
            if args.secs > 0:
                for mix in args.latency_mix:
                    report(mix, await latency(bus, url, args, work, mix), args)
        finally:
            await bus.close()
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10000.0)
    parser.add_argument("--secs", type=float, default=5.0, help="latency phase length (0: skip it)")
    parser.add_argument("--latency-mix", default="new,known",
                        help="latency phases: new (every event a new host), known (sightings of "
                             "known hosts, a share of them changes); default both")
    parser.add_argument("--hosts", type=int, default=5000, help="known hosts (--latency-mix known)")
    parser.add_argument("--change-share", type=float, default=0.01,
                        help="share of events that change a host (--latency-mix known)")
    parser.add_argument("--sinks", default=",".join(SINKS),
                        help="sink stages to run (default: all three)")
    parser.add_argument("--layout", choices=("one", "each"), default="one",
                        help="all sinks in one `lanscope run` process, or one process per sink")
    parser.add_argument("--flush-ms", type=int, default=Config().sinks.host_state.flush_ms,
                        help="sinks.host_state.flush_ms (default: the shipped one)")
    parser.add_argument("--compact-secs", type=float, default=Config().sinks.host_state.compact_secs,
                        help="sinks.host_state.compact_secs (default: the shipped one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, DuckDB)")
    parser.add_argument("--profile", action="store_true",
                        help="run the sinks under py-spy, sampling the thread that holds the GIL; "
                             "samples in the work directory (with --keep)")
    parser.add_argument("--verbose", action="store_true",
                        help="sinks log at debug level (a line per batch) into the work directory")
    # Internal: the publisher process.
    parser.add_argument("--role", choices=("controller", "publish"), default="controller",
                        help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("window", "sync"), default="window", help=argparse.SUPPRESS)
    parser.add_argument("--salt", default="", help=argparse.SUPPRESS)
    parser.add_argument("--mix", choices=("new", "known"), default="new", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publish":
        if not args.rate or "--rate" not in sys.argv:
            args.rate = 0.0
        print(json.dumps(asyncio.run(publish_role(args))))
        return 0
    args.sinks = tuple(s for s in args.sinks.split(",") if s)
    args.latency_mix = tuple(m for m in args.latency_mix.split(",") if m)
    if set(args.latency_mix) - {"new", "known"}:
        parser.error("--latency-mix: new, known or new,known")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
