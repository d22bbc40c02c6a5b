"""The dashboard under a big LAN's data: page times at 10,000 hosts with a year of history,
and server-sent events to 50 open pages.

Everything runs on this machine's loopback (no lab needed, nothing is scanned):

1. a store of ``--hosts`` hosts and ``--days`` of history (bench.webdata, built once and
   reused: ``--db``);
2. an embedded nats-server, the host_state sink on that store (``lanscope run --stage
   sinks.host_state``: the DuckDB owner, answering ``lanscope.query``), and the dashboard
   (``lanscope web``) as separate processes, as a user runs them;
3. the hosts page (default, deep pages, sorts, search and each filter) and the host page
   (random hosts; its history covers 90 days, and a quarter as many with ``?history=all``,
   the whole year) asked ``--requests`` times each, one at a time: the server's time to
   the response (its ``Server-Timing`` header) and the client's, p50/p95/max;
4. the same with the pipeline stopped: the dashboard reads the file read-only;
5. ``--clients`` SSE streams open on /events, ``--events`` host changes published on NATS
   one by one: for each, the time from the publish to the last of the streams receiving it.

    .venv/bin/python -m bench.web --hosts 10000 --days 365
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.webdata import build, mac_of
from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from schemas import ChangeKind, FieldChange, HostChanged, HostRecord
from tests.e2e.harness import percentile

ROOT = Path(__file__).resolve().parents[1]
HOSTS_QUERIES = [
    {}, {"page": "50"}, {"page": "200"}, {"sort": "last_seen", "dir": "desc"}, {"sort": "hostname"},
    {"q": "host-0123"}, {"q": "02:5e:00:00:1"}, {"state": "offline"}, {"service": "ssh"},
    {"vendor": "Dell Inc."}, {"subnet": "198.18.10.0/24"},
    {"state": "online", "service": "https", "page": "3"},
]



def summary(name: str, server: list[float], client: list[float]) -> dict[str, Any]:
    def ms(values: list[float], q: float) -> float:
        return round(percentile(values, q), 1)
    return {"what": name, "n": len(server),
            "server_p50_ms": ms(server, 50), "server_p95_ms": ms(server, 95),
            "server_max_ms": round(max(server), 1),
            "client_p50_ms": ms(client, 50), "client_p95_ms": ms(client, 95)}


async def timed(client: httpx.AsyncClient, path: str,
                params: dict[str, str] | None = None) -> tuple[float, float]:
    started = time.perf_counter()
    response = await client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        said = re.findall(r"<p>(.*?)</p>", response.text)
        raise RuntimeError(f"{path} {params}: HTTP {response.status_code}: {said or response.text[:300]}")
    timing = response.headers.get("server-timing", "app;dur=0").split("dur=")[1]
    return float(timing), elapsed


async def pages(url: str, hosts: int, requests: int, mode: str, seed: int = 3) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(3):   # warm up: the first query loads DuckDB's caches
            await timed(client, "/hosts")
            await timed(client, f"/hosts/{mac_of(1)}")
        results = []
        server: list[float] = []
        client_ms: list[float] = []
        for i in range(requests):
            s, c = await timed(client, "/hosts", HOSTS_QUERIES[i % len(HOSTS_QUERIES)])
            server.append(s)
            client_ms.append(c)
        results.append(summary(f"hosts page ({mode})", server, client_ms))
        server, client_ms = [], []
        for _ in range(requests):
            s, c = await timed(client, f"/hosts/{mac_of(rng.randint(1, hosts))}")
            server.append(s)
            client_ms.append(c)
        results.append(summary(f"host page ({mode})", server, client_ms))
        server, client_ms = [], []
        for _ in range(max(requests // 4, 1)):      # the whole year of history, on request
            s, c = await timed(client, f"/hosts/{mac_of(rng.randint(1, hosts))}", {"history": "all"})
            server.append(s)
            client_ms.append(c)
        results.append(summary(f"host page, ?history=all ({mode})", server, client_ms))
        return results


async def sse(url: str, nats_url: str, clients: int, events: int) -> dict[str, Any]:
    received: dict[str, list[float]] = {}
    ready = asyncio.Event()
    opened = 0

    async def listen(client: httpx.AsyncClient) -> None:
        nonlocal opened
        async with client.stream("GET", "/events", params={"kind": "changed"}) as response:
            opened += 1
            if opened == clients:
                ready.set()
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "lanscope":
                    key = json.loads(line[6:])["host_key"]
                    received.setdefault(key, []).append(time.perf_counter())

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(listen(client)) for _ in range(clients)]
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(1.0)          # every stream registered on the server side
        latencies: list[float] = []
        lost = 0
        async with await Bus.connect(NatsConfig(url=nats_url), name="bench-web") as bus:
            for i in range(events):
                key = f"bench-sse-{i}"
                event = HostChanged(host_key=key, observed_at=datetime.now(UTC), source="bench",
                                    kind=ChangeKind.CHANGED,
                                    changes=[FieldChange(field="open_ports", old=["tcp/22"], new=[])],
                                    host=HostRecord(host_key=key, ip="198.18.200.1", active=True))
                sent = time.perf_counter()
                await bus.publish(event)
                deadline = sent + 5
                while len(received.get(key, [])) < clients and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                got = received.get(key, [])
                if len(got) < clients:
                    lost += clients - len(got)
                else:
                    latencies.append((max(got) - sent) * 1000)
                await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"what": f"SSE: publish -> all {clients} pages", "events": events, "missed": lost,
            "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "max_ms": round(max(latencies), 1)}


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "lanscope", *argv], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)


async def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"exited: {log.read_text()[-2000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer at {url}: {log.read_text()[-2000:]}")


async def wait_pipeline(url: str) -> None:
    """Until the dashboard's queries are answered by the pipeline (not the file)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(300):
            page = await client.get("/hosts")
            if page.status_code == 200 and page.headers.get("x-lanscope-data") == "pipeline":
                return
            await asyncio.sleep(0.3)
    raise RuntimeError("the dashboard never joined the pipeline")


async def main_async(args: argparse.Namespace) -> None:
    db = args.db or Path(tempfile.gettempdir()) / f"lanscope-bench-web-{args.hosts}-{args.days}.duckdb"
    if args.rebuild or not db.exists():
        await build(db, args.hosts, args.days, args.changes_per_day)
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    nats = EmbeddedNats(work / "nats")
    nats_url = nats.start()
    config = work / "config.yaml"
    config.write_text(json.dumps({"data_dir": str(work / "var"), "nats": {"url": nats_url},
                                  "sinks": {"host_state": {"path": str(db), "query": {"timeout_ms": 10000}}},
                                  "web": {"port": args.port, "max_streams": args.clients + 20}}))
    url = f"http://127.0.0.1:{args.port}"
    sink = start(["-c", str(config), "run", "--stage", "sinks.host_state"], work / "host_state.log")
    web = start(["-c", str(config), "web"], work / "web.log")
    results: list[dict[str, Any]] = []
    try:
        await wait_http(url + "/static/app.css", web, work / "web.log")
        await wait_pipeline(url)
        results += await pages(url, args.hosts, args.requests, "pipeline")
        results.append(await sse(url, nats_url, args.clients, args.events))
        sink.terminate()
        sink.wait(30)
        results += await pages(url, args.hosts, args.requests, "file, no pipeline")
    finally:
        for proc in (web, sink):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        nats.stop()
    print(f"\n{args.hosts} hosts, {args.days} days of history ({db}, {db.stat().st_size / 1e6:.0f} MB); "
          f"logs in {work}")
    for row in results:
        print(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--changes-per-day", type=float, default=1.5)
    parser.add_argument("--db", type=Path, help="store to use (built if missing)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--requests", type=int, default=200, help="requests per page kind")
    parser.add_argument("--clients", type=int, default=50, help="open SSE streams")
    parser.add_argument("--events", type=int, default=100, help="events published for the SSE test")
    parser.add_argument("--port", type=int, default=18480)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
