"""port_probe scaled out: 1, 2 and 4 replicas sharing one durable consumer, on the lab.

    LANSCOPE_LAB_PREFIX=p4 python -m tests.lab up
    ip netns exec p4-scan env LANSCOPE_LAB_PREFIX=p4 .venv/bin/python -m bench.replicas [--runs 1]
    LANSCOPE_LAB_PREFIX=p4 python -m tests.lab down

Each replica is a ``lanscope run --stage port_probe`` process, as compose scales
it (``--scale port_probe=N``): all of them pull the one durable consumer
``port_probe`` of an embedded nats-server, and the claims bucket keeps two of
them off one host. The work is the sightings of a sweep: every live host of
the lab's 198.18.0.0/24 (servers: banners and fingerprints) and ``--dead``
addresses of 198.18.3.0/24 where nothing answers (the probe waits out its
timeouts), each probed once on the top ``--ports`` TCP ports. Time: from the
first sighting published to the last ``PortsProbed`` in the stream; a run
starts on a fresh store, with the replicas already reading. Throughput is
hosts probed per second; scaling is relative to one replica.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from lanscope.runtime.topology import STAGES
from schemas import HostSeen, host_key
from schemas import subjects as subj
from tests.lab import Lab

LANSCOPE = [sys.executable, "-m", "lanscope"]


def sightings(lab: Lab, dead: int) -> list[HostSeen]:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    live = [(h.ip, h.mac) for h in lab.live_hosts(Lab.LIVE_24)]
    gone = [(f"198.18.3.{i + 1}", None) for i in range(dead)]
    return [HostSeen(host_key=host_key(mac, ip), observed_at=now, source="arp", ip=ip, mac=mac,
                     evidence="arp-reply" if mac else "bench") for ip, mac in [*live, *gone]]


def config_file(work: Path, url: str, ports: int) -> Path:
    path = work / "replica.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(work / "var"), "nats": {"url": url},
        "scope": {"allow": ["198.18.0.0/15"]}, "logging": {"level": "warning"},
        "enrichers": {"port_probe": {"tcp": "", "top_ports": ports, "udp": ""}},
    }))
    return path


async def one_run(replicas: int, lab: Lab, args: argparse.Namespace) -> tuple[float, int]:
    work = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    server = EmbeddedNats(work / "nats")
    url = server.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bus = await Bus.connect(NatsConfig(url=url), name="bench-replicas")
        try:
            await bus.provision([STAGES["port_probe"]])
            config = config_file(work, url, args.ports)
            for i in range(replicas):
                argv = [*LANSCOPE, "-c", str(config), "run", "--stage", "port_probe"]
                with (work / f"replica{i}.log").open("ab") as log:
                    procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                  stdin=subprocess.DEVNULL))
            while True:      # every replica pulling before the clock starts
                info = await bus.js.consumer_info(subj.FACTS.name, "port_probe")
                if (info.num_waiting or 0) >= replicas:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a replica exited: " + (work / "replica0.log").read_text()[-2000:])
                await asyncio.sleep(0.1)
            work_items = sightings(lab, args.dead)
            started = time.perf_counter()
            await bus.publish_events(work_items)
            while True:
                info = await bus.js.stream_info(subj.FACTS.name, subjects_filter=subj.HOST_PORTS)
                done = sum((info.state.subjects or {}).values())
                if done >= len(work_items):
                    return time.perf_counter() - started, done
                if time.perf_counter() - started > args.timeout:
                    raise RuntimeError(f"{replicas} replica(s): {done}/{len(work_items)} hosts "
                                       f"after {args.timeout}s")
                await asyncio.sleep(0.05)
        finally:
            await bus.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", default="1,2,4", help="replica counts to compare (default 1,2,4)")
    parser.add_argument("--runs", type=int, default=1, help="runs per count (the median is shown)")
    parser.add_argument("--dead", type=int, default=120, help="addresses where nothing answers (default 120)")
    parser.add_argument("--ports", type=int, default=100, help="top TCP ports probed per host (default 100)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root inside the lab's scanner namespace (see the module docstring)", file=sys.stderr)
        return 2
    lab = Lab.from_env()
    counts = [int(n) for n in args.replicas.split(",")]
    times: dict[int, list[float]] = {n: [] for n in counts}
    hosts = 0
    for _ in range(args.runs):           # counts interleaved: load changes hit each alike
        for n in counts:
            elapsed, hosts = asyncio.run(one_run(n, lab, args))
            times[n].append(elapsed)
            print(f"  {n} replica(s): {hosts} hosts in {elapsed:.2f} s", file=sys.stderr)
    base = statistics.median(times[counts[0]])
    print(f"| replicas | hosts | wall time (median of {args.runs}) | hosts/s | scaling |")
    print("|---|---|---|---|---|")
    for n in counts:
        t = statistics.median(times[n])
        print(f"| {n} | {hosts} | {t:.2f} s | {hosts / t:.1f} | {base / t:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
