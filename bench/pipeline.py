"""Benchmark: HostSeen/PortsProbed through NATS JetStream into DuckDB, against bare publishes.

    .venv/bin/python -m bench.pipeline [--events 20000] [--runs 3] [--rate 10000] [--secs 5]

Starts its own nats-server (the embedded binary, loopback only, temporary
store) and, in the same run:

1. bare publish rate: the same events published to the FACTS stream with
   PubAcks (64 in flight), nothing consuming;
2. pipeline throughput: the events published as fast as possible while the
   sinks (host_state → DuckDB, findings, registry) run through the real runner;
   events/s = events / time until host_state has acked the last one;
3. latency: sightings of new hosts paced at --rate events/s; for each, the
   time from its observed_at (stamped at publish) to the HostChanged event on
   lanscope.host.changed.new; median and p99.

Sends no packets to any network: everything is NATS on 127.0.0.1 and a file.
Goal (issue 6): pipeline >= 1/2 the bare publish rate; p99 < 1 s at 10,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from lanscope.config import Config, NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.runner import Runner, RunnerOptions
from lanscope.runtime.topology import STAGES
from lanscope.stages import StageContext, build
from schemas import Event, HostSeen, PortResult, PortsProbed, PortState, Protocol, decode, encode
from schemas.subjects import FACTS, subject_for

SINKS = ("host_state", "findings", "registry")
_sinks: tuple[str, ...] = SINKS
_IN_FLIGHT = 64


def mac_of(i: int) -> str:
    octets = (0x02, 0x10, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
    return ":".join(f"{b:02x}" for b in octets)


def ip_of(i: int) -> str:
    return f"198.18.{(i >> 8) & 255}.{i & 255}"


def workload(n: int, hosts: int, salt: str) -> list[Event]:
    """Half sightings, half probe results, over `hosts` hosts (so most events update a known host)."""
    now = datetime.now(UTC)
    events: list[Event] = []
    ports = [PortResult(protocol=Protocol.TCP, port=22, state=PortState.OPEN, service="ssh",
                        product="OpenSSH", version="9.2p1", banner="SSH-2.0-OpenSSH_9.2p1"),
             PortResult(protocol=Protocol.TCP, port=80, state=PortState.OPEN, service="http")]
    for i in range(n):
        h = i % hosts
        if i % 2 == 0:
            events.append(HostSeen(host_key=mac_of(h), observed_at=now, source="arp", ip=ip_of(h),
                                   mac=mac_of(h), evidence="arp-reply", sweep_id=f"{salt}-{i}"))
        else:
            events.append(PortsProbed(host_key=mac_of(h), observed_at=now, source="port_probe",
                                      ip=ip_of(h), mac=mac_of(h), ports=ports, duration_ms=float(i)))
    return events


async def publish_all(bus: Bus, events: list[Event], rate: float | None = None) -> float:
    """Publish with up to _IN_FLIGHT PubAcks outstanding; paced at `rate`/s if given. Returns seconds."""
    payloads = []
    for e in events:
        e.id = (f"{e.host_key}-{type(e).__name__}-{getattr(e, 'sweep_id', '')}-"
                f"{getattr(e, 'duration_ms', '')}")
        payloads.append((subject_for(e), encode(e), e.id))
    start = time.perf_counter()
    queue: asyncio.Queue[tuple[str, bytes, str] | None] = asyncio.Queue()

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            subject, data, msg_id = item
            await bus.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})

    workers = [asyncio.create_task(worker()) for _ in range(_IN_FLIGHT)]
    for i, item in enumerate(payloads):
        if rate:
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await queue.put(item)
        if queue.qsize() > 4 * _IN_FLIGHT:
            await asyncio.sleep(0)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    return time.perf_counter() - start


async def drained(bus: Bus, stream: str, durable: str, deadline_secs: float = 300) -> None:
    end = time.monotonic() + deadline_secs
    while time.monotonic() < end:
        info = await bus.js.consumer_info(stream, durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{durable} did not drain {stream}")


async def reset(bus: Bus) -> None:
    for info in await bus.js.streams_info():
        await bus.js.delete_stream(info.config.name)


def config_for(data_dir: Path, url: str) -> Config:
    return msgspec.convert({"data_dir": str(data_dir), "nats": {"url": url}}, Config)


async def bare_rate(bus: Bus, n: int) -> float:
    await reset(bus)
    await bus.provision([])
    secs = await publish_all(bus, workload(n, max(1, n // 10), f"bare{time.time()}"))
    return n / secs


async def with_pipeline(bus: Bus, config: Config, body: object) -> object:
    """Run the sinks through the real runner while `body` (a coroutine function) runs."""
    await reset(bus)
    specs = [STAGES[name] for name in _sinks]
    await bus.provision(specs)
    runner = Runner(bus=bus, options=RunnerOptions(stats_every_secs=3600, sink_flush_ms=50))
    ctx = StageContext(config=config)
    for spec in specs:
        runner.add(spec, build(spec.builder, ctx))
    task = asyncio.create_task(runner.run())
    try:
        return await body()  # type: ignore[operator]
    finally:
        runner.stop()
        await task


async def pipeline_rate(bus: Bus, url: str, n: int, work: Path) -> float:
    data_dir = Path(tempfile.mkdtemp(dir=work))

    async def body() -> float:
        start = time.perf_counter()
        await publish_all(bus, workload(n, max(1, n // 10), f"pipe{time.time()}"))
        await drained(bus, FACTS.name, "host_state")
        return n / (time.perf_counter() - start)

    return await with_pipeline(bus, config_for(data_dir, url), body)  # type: ignore[return-value]


async def latency(bus: Bus, url: str, rate: float, secs: float, work: Path) -> list[float]:
    data_dir = Path(tempfile.mkdtemp(dir=work))
    n = int(rate * secs)
    latencies: list[float] = []

    async def on_changed(msg: object) -> None:
        event = decode(msg.data)  # type: ignore[attr-defined]
        latencies.append(time.time() - event.observed_at.timestamp())

    async def body() -> list[float]:
        sub = await bus.nc.subscribe("lanscope.host.changed.new", cb=on_changed)
        start = time.perf_counter()
        events: list[Event] = []
        payload_base = 1_000_000
        # Fresh hosts, each stamped when it is published.
        for i in range(n):
            h = payload_base + i
            events.append(HostSeen(host_key=mac_of(h), observed_at=datetime.now(UTC), source="arp",
                                   ip=ip_of(h), mac=mac_of(h), evidence="arp-reply", sweep_id=str(i)))
        for_pub: list[Event] = []
        t0 = time.time()
        for i, e in enumerate(events):   # stamp the planned publish time
            e.observed_at = datetime.fromtimestamp(t0 + 0.2 + i / rate, UTC)
            for_pub.append(e)
        await asyncio.sleep(max(0.0, t0 + 0.2 - time.time()))
        await publish_all(bus, for_pub, rate=rate)
        await drained(bus, FACTS.name, "host_state")
        end = time.monotonic() + 10
        while len(latencies) < n and time.monotonic() < end:
            await asyncio.sleep(0.05)
        await sub.unsubscribe()
        del start
        return latencies

    return await with_pipeline(bus, config_for(data_dir, url), body)  # type: ignore[return-value]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="lanscope-bench-"))
    server = EmbeddedNats(work / "nats")
    url = server.start()
    try:
        bus = await Bus.connect(msgspec.structs.replace(NatsConfig(), url=url, max_ack_pending=20000),
                                name="bench")
        try:
            bare, piped = [], []
            for run in range(args.runs):
                bare.append(await bare_rate(bus, args.events))
                piped.append(await pipeline_rate(bus, url, args.events, work))
                print(f"run {run + 1}: bare {bare[-1]:,.0f} ev/s, pipeline {piped[-1]:,.0f} ev/s")
            b, p = statistics.median(bare), statistics.median(piped)
            print(f"\nmedian of {args.runs}: bare JetStream publish {b:,.0f} events/s; "
                  f"pipeline (NATS -> sinks -> DuckDB) {p:,.0f} events/s; ratio {p / b:.2f} (goal >= 0.50)")
            lat = await latency(bus, url, args.rate, args.secs, work)
            if lat:
                print(f"latency at {args.rate:,.0f} events/s for {args.secs:g} s: "
                      f"{len(lat):,} HostChanged, median {statistics.median(lat) * 1000:.0f} ms, "
                      f"p99 {pct(lat, 0.99) * 1000:.0f} ms (goal < 1000 ms)")
            else:
                print("latency: no HostChanged received")
        finally:
            await bus.close()
    finally:
        server.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10000.0)
    parser.add_argument("--secs", type=float, default=5.0)
    parser.add_argument("--sinks", default=",".join(SINKS),
                        help="sink stages to run (default: all three)")
    args = parser.parse_args()
    global _sinks
    _sinks = tuple(s for s in args.sinks.split(",") if s)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
