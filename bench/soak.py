"""Soak: lanscope watching the lab for a long while; does it report only what happened?

    LANSCOPE_LAB_PREFIX=q4 .venv/bin/python -m tests.lab up
    ip netns exec q4-scan env LANSCOPE_LAB_PREFIX=q4 .venv/bin/python -m bench.soak \\
        --schedules default|short [--minutes 30] [--outages 12] [--hog 2] [--json FILE]
    LANSCOPE_LAB_PREFIX=q4 .venv/bin/python -m tests.lab down

Runs the real pipeline as a user splits it (one ``lanscope run`` process with the
producers, enrichers and the other sinks, one with ``sinks.host_state``) against
its own nats-server, inside the lab's scanner namespace. After a warm-up (every
live host known, then ``settle`` seconds) nothing on the LAN changes except the
outages: ``--outages`` lab hosts (fillers on the /24 and both hosts behind the
router) are unplugged one after another, staggered over the run, each for
``down`` seconds, then plugged back in. Reported (tests/e2e/harness.py judges):

- changed-without-fact: `changed` events after the warm-up (goal 0): nothing
  changed but presence, and presence is `gone`/`back`;
- false gone: a `gone` for a host that was plugged in (goal 0), and the scanner's
  own address gone;
- down -> `gone` and up -> `back` delays (from the link change to the event's
  arrival at a subscriber), p50 and p99;
- whether the history table holds exactly one row per published change.

``--hog N`` starts N busy-looping processes for the whole run (the machine has two
cores: ``--hog 2`` keeps both busy). Sends packets only inside the lab.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from lanscope.runtime.embedded import EmbeddedNats
from tests.e2e.harness import (
    ChangeLog,
    Outage,
    Pipeline,
    SoakReport,
    history_disagreements,
    judge,
    lab_config,
    percentile,
)
from tests.lab import Lab

MAIN_STAGES = ("arp_sweep", "ping_sweep", "neighbours", "port_probe", "dns_names", "mac_vendor",
               "presence_check", "findings", "registry")

# Schedules (seconds) and presence settings per profile. "default" is config.yaml's;
# "short" is the fast lab setting (ARP every 5 s, gone after 2 missed sweeps and 8 s).
PROFILES: dict[str, dict[str, Any]] = {
    # Off-link hosts are covered by the ping sweep alone: at 300 s, two missed sweeps take
    # 5-10 minutes, longer than an outage here, so the default soak unplugs on-link hosts.
    "default": {"intervals": {"arp_sweep": 60, "ping_sweep": 300, "neighbours": 30},
                "reprobe_secs": 3600, "presence": {}, "settle": 90, "down": 300, "offlink": False},
    "short": {"intervals": {"arp_sweep": 5, "ping_sweep": 10, "neighbours": 5},
              "reprobe_secs": 60, "presence": {"missed_sweeps": 2, "grace_secs": 8},
              "settle": 30, "down": 45, "offlink": True},
}


def config_text(lab: Lab, data_dir: Path, url: str, profile: dict[str, Any]) -> str:
    producers = "\n".join(f"  {name}: {{interval_secs: {secs}}}"
                          for name, secs in profile["intervals"].items())
    presence = ", ".join(f"{k}: {v}" for k, v in profile["presence"].items())
    return lab_config(lab, data_dir, url) + f"""
producers:
{producers}
  dhcp_leases: {{enabled: false}}
  proxmox_guests: {{enabled: false}}
enrichers:
  port_probe:
    tcp: "20-1024,1883,3306,5432,6379"
    reprobe_secs: {profile["reprobe_secs"]}
sinks:
  host_state:
    presence: {{{presence}}}
"""


def outage_hosts(lab: Lab, count: int, offlink: bool) -> list[str]:
    """Fillers of the /24 (and the two hosts behind the router, one of which drops ICMP), each
    once while there are enough, so no host comes and goes often enough to count as flapping."""
    fillers = [h.name for h in lab.live_hosts(lab.LIVE_24) if re.fullmatch(r"f\d+", h.name) and h.peer_if]
    pool = [*(["off1", "off2"] if offlink else []), *fillers]
    return [pool[i % len(pool)] for i in range(count)]


async def soak(lab: Lab, work: Path, *, profile: dict[str, Any], minutes: float, outages: int, hog: int,
               stages: tuple[str, ...] = MAIN_STAGES) -> tuple[SoakReport, list[str], dict[str, Any]]:
    nats = EmbeddedNats(work / "nats")
    url = nats.start()
    pipeline = Pipeline.prepare(lab, url, work, config_text(lab, work / "var", url, profile), stages)
    main, sink = pipeline.main, pipeline.sink
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hog)]
    log = ChangeLog()
    plan: list[Outage] = []
    unplugged: set[str] = set()
    try:
        async with await Bus.connect(NatsConfig(url=url), name="lanscope-soak") as bus:
            await bus.provision([])
            await log.follow(bus)
            sink.start()
            main.start()
            started = time.time()
            live = lab.live_hosts(lab.LIVE_24) + lab.live_hosts(lab.OFFLINK)
            keys = {h.name: (h.mac if h.on_link else h.ip) for h in live}
            while not set(keys.values()) <= {e.host_key for e in log.events}:
                if time.time() - started > 600:
                    raise RuntimeError(f"the lab was not discovered in 10 minutes:\n{main.tail()}")
                await asyncio.sleep(1)
            await asyncio.sleep(profile["settle"])
            warm_at = time.time()
            end = started + minutes * 60
            down = profile["down"]
            # Staggered: the last host is back with a few sweeps to spare before the end.
            last_start = end - warm_at - down - max(60.0, 2 * profile["intervals"]["arp_sweep"])
            step = last_start / max(outages - 1, 1)
            for i, host in enumerate(outage_hosts(lab, outages, profile["offlink"])):
                plan.append(Outage(host, keys[host], warm_at + i * step, warm_at + i * step + down))
            await _run_outages(lab, plan, unplugged)
            await asyncio.sleep(max(0.0, end - time.time()))
            main.terminate()
            await asyncio.sleep(5)          # host_state drains what the producers sent last
            sink.terminate()
            await asyncio.sleep(1)          # the last HostChanged reach the subscriber
    finally:
        for process in hogs:
            process.kill()
            process.wait()
        main.stop()
        sink.stop()
        for host in unplugged:
            lab.set_link(host, True)
        nats.stop()
    scanner = {lab.SCANNER_IP}
    report = judge(log, plan, warm_at=warm_at, own_keys=scanner)
    history = history_disagreements(pipeline.db, log.events)
    facts = {"warm_up_secs": round(warm_at - started, 1), "outages": len(plan)}
    return report, history, facts


async def _run_outages(lab: Lab, plan: list[Outage], unplugged: set[str]) -> None:
    """Unplug and plug in as planned (wall times), recording when each happened."""
    steps = sorted([(o.down_at, False, o) for o in plan] + [(o.up_at or 0.0, True, o) for o in plan],
                   key=lambda s: s[0])
    for when, up, outage in steps:
        await asyncio.sleep(max(0.0, when - time.time()))
        await asyncio.to_thread(lab.set_link, outage.host, up)
        if up:
            outage.up_at = time.time()
            unplugged.discard(outage.host)
        else:
            outage.down_at = time.time()
            unplugged.add(outage.host)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", choices=sorted(PROFILES), default="short")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--outages", type=int, default=12)
    parser.add_argument("--hog", type=int, default=0, help="busy-looping processes (2: both cores)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, DuckDB)")
    parser.add_argument("--stages", default=",".join(MAIN_STAGES),
                        help="the stages of the process beside host_state")
    args = parser.parse_args()
    lab = Lab.from_env()
    work = Path(tempfile.mkdtemp(prefix="lanscope-soak-"))
    try:
        report, history, facts = asyncio.run(soak(lab, work, profile=PROFILES[args.schedules],
                                                  minutes=args.minutes, outages=args.outages,
                                                  hog=args.hog, stages=tuple(args.stages.split(","))))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory: {work}")
    print(f"soak: schedules {args.schedules}, {args.minutes:g} min, hog {args.hog}, {facts}")
    print(report.line())
    print(f"history vs published changes: {'agree' if not history else history[:10]}")
    if args.json:
        def spread(values: list[float]) -> dict[str, float | None]:
            return {"p50": round(percentile(values, 50), 1) if values else None,
                    "p99": round(percentile(values, 99), 1) if values else None}
        args.json.write_text(json.dumps({
            "schedules": args.schedules, "minutes": args.minutes, "hog": args.hog, **facts,
            "events": report.events, "changed_without_fact": len(report.noise),
            "noise_fields": dict(report.noise_fields), "empty": len(report.empty),
            "new_after_warmup": len(report.new_after_warmup), "false_gone": len(report.false_gone),
            "false_back": len(report.false_back), "own_gone": len(report.own_gone),
            "gone_delay": spread(report.gone_delays), "back_delay": spread(report.back_delays),
            "missed": report.missed, "repeated": report.repeated, "history": history[:20]}, indent=2))


if __name__ == "__main__":
    main()
