"""Benchmark: host discovery, lanscope vs nmap -sn, arp-scan and masscan, on the lab.

    ip netns exec <prefix>-scan .venv/bin/python -m bench.discovery [--runs 5] [--runs16 3]

(or without `ip netns exec`: the lab of LANSCOPE_LAB_PREFIX is brought up if needed and
this process enters its scanner namespace). In one run, on the same lab:

* the /24 with ~40 live hosts: `lanscope arp` (the CLI, Python start-up included),
  the ArpSweep stage in-process (engine time), `nmap -sn`, `arp-scan` default and
  tuned (`-r1 -t100`);
* the sparse /16 (50 live hosts): `lanscope arp`, `nmap -sn -T5 --min-rate 20000`
  (plain `nmap -sn` takes more than ten minutes here), `masscan --arp --rate 200000`.

Wall time is the median of the runs; recall = live lab hosts found / live lab hosts.
The table is printed and saved to bench/results/discovery-<time>.json (gitignored).
Goal (issue 3): complete recall; /24 at least as fast as tuned arp-scan; /16 faster
than every peer.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from lanscope.net.interfaces import interfaces_async
from lanscope.net.targets import parse_targets
from lanscope.output import print_table
from lanscope.runtime.stage import StageContext
from producers.arp_sweep import Config, build
from schemas import HostSeen
from tests.lab import Lab

IFACE = "br0"
LANSCOPE = str(Path(sys.executable).with_name("lanscope"))
_IP = re.compile(r"\b(198\.1[89]\.\d{1,3}\.\d{1,3})\b")


def _ips(text: str) -> set[str]:
    return set(_IP.findall(text))


def run_cli(argv: list[str], parse: Callable[[str], set[str]],
            timeout: float = 900) -> tuple[float, set[str]]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr[-500:]}")
    return elapsed, parse(result.stdout)


def lanscope_arp(target: str) -> tuple[float, set[str]]:
    return run_cli([LANSCOPE, "arp", "--json", "--no-neighbours", "-i", IFACE, target],
                   lambda out: {r["ip"] for r in json.loads(out)["replies"]})


def lanscope_stage(target: str) -> tuple[float, set[str]]:
    # Built as `lanscope arp` builds it: the stage's defaults, the command's targets.
    stage = build(Config(), StageContext(data_dir=Path("."), sweep=parse_targets([target])))
    start = time.perf_counter()
    events = asyncio.run(stage.sweep())
    return time.perf_counter() - start, {e.ip for e in events if isinstance(e, HostSeen) and e.ip}


def nmap(target: str, *extra: str) -> tuple[float, set[str]]:
    return run_cli(["nmap", "-sn", "-n", *extra, target, "-oG", "-"],
                   lambda out: {m for line in out.splitlines() if "Status: Up" in line for m in _ips(line)})


def arp_scan(target: str, *extra: str) -> tuple[float, set[str]]:
    return run_cli(["arp-scan", "-I", IFACE, "-q", "-x", *extra, target], _ips)


def masscan(target: str) -> tuple[float, set[str]]:
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        elapsed, _ = run_cli(["masscan", "--arp", target, "-e", IFACE, "--rate", "200000", "--wait", "1",
                              "-oL", out.name], lambda _out: set())
        return elapsed, _ips(Path(out.name).read_text())


def measure(name: str, target: str, runs: int, job: Callable[[], tuple[float, set[str]]],
            expected: set[str]) -> dict[str, object]:
    times, recalls = [], []
    for _ in range(runs):
        elapsed, found = job()
        times.append(elapsed)
        recalls.append(len(found & expected) / len(expected))
    row = {"tool": name, "target": target, "runs": runs, "median_secs": round(statistics.median(times), 3),
           "min_secs": round(min(times), 3), "recall": round(min(recalls), 4)}
    print(f"  {name:38s} {row['median_secs']:8.3f} s  recall {row['recall']:.3f}", file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per tool on the /24")
    parser.add_argument("--runs16", type=int, default=3, help="runs per tool on the /16")
    args = parser.parse_args()
    lab = Lab.from_env()
    if not any(i.name == IFACE for i in asyncio.run(interfaces_async())):
        if not lab.is_up():
            lab.up()
        lab.enter_scanner()
    missing = [t for t in ("nmap", "arp-scan", "masscan") if shutil.which(t) is None]
    if missing:
        print(f"missing peer tools: {', '.join(missing)}", file=sys.stderr)
        return 2

    def live(subnet: str) -> set[str]:
        net = ipaddress.ip_network(subnet)
        return {h.ip for h in lab.live_hosts() if h.on_link and ipaddress.ip_address(h.ip) in net}

    rows = []
    small, big = lab.LIVE_24, lab.SUBNET
    expected24, expected16 = live(small), live(big)
    print(f"/24 {small}: {len(expected24)} live hosts; /16 {big}: {len(expected16)}", file=sys.stderr)
    for name, job in (("lanscope arp (CLI)", lambda: lanscope_arp(small)),
                      ("lanscope ArpSweep stage (in-process)", lambda: lanscope_stage(small)),
                      ("nmap -sn", lambda: nmap(small)),
                      ("arp-scan (default)", lambda: arp_scan(small)),
                      ("arp-scan -r1 -t100", lambda: arp_scan(small, "-r1", "-t100"))):
        rows.append(measure(name, small, args.runs, job, expected24))
    for name, job in (("lanscope arp (CLI)", lambda: lanscope_arp(big)),
                      ("lanscope ArpSweep stage (in-process)", lambda: lanscope_stage(big)),
                      ("nmap -sn -T5 --min-rate 20000", lambda: nmap(big, "-T5", "--min-rate", "20000")),
                      ("masscan --arp --rate 200000", lambda: masscan(big))):
        rows.append(measure(name, big, args.runs16, job, expected16))
    print_table(["tool", "target", "runs", "median s", "min s", "recall"],
                [(r["tool"], r["target"], r["runs"], r["median_secs"], r["min_secs"], r["recall"])
                 for r in rows], title="host discovery (lab)")
    results = Path(__file__).with_name("results")
    results.mkdir(exist_ok=True)
    path = results / f"discovery-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"lab": lab.prefix, "rows": rows}, indent=2) + "\n")
    print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
