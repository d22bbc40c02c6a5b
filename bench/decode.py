"""Micro-benchmark: what decoding an event costs, validation included (issue 20).

    .venv/bin/python -m bench.decode [--events 20000] [--runs 5]

Decodes the same realistic mix a sink reads (ARP and ICMP sightings of 5,000
hosts, one port snapshot in ten) with ``schemas.decode``, the one decoder of
the pipeline, and prints the median microseconds per event and events/s on
one core. Run it on the commit before and after a change to the schemas to
see what the change costs. Sends nothing anywhere.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from schemas import decode, encode
from tests.factories import host_seen, port, ports_probed


def workload(count: int, hosts: int = 5000, seed: int = 20) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(count):
        h = rng.randrange(hosts)
        ip = f"198.18.{h // 250}.{h % 250 + 1}"
        mac = f"02:00:00:00:{h // 256:02x}:{h % 256:02x}"
        if i % 10 == 9:
            event = ports_probed(ip, mac, [port(22, service="ssh", product="OpenSSH", version="9.2p1"),
                                           port(80, service="http", product="nginx")], t=i)
        elif i % 2:
            event = host_seen(ip, None, source="icmp", t=i, rtt_ms=0.4, ttl=64)
        else:
            event = host_seen(ip, mac, source="arp", t=i, interface="eth0")
        event.id = f"{i:020d}"
        out.append(encode(event))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    payloads = workload(args.events)
    for data in payloads[:1000]:           # warm caches the way a running sink has them warm
        decode(data)
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        for data in payloads:
            decode(data)
        timings.append((time.perf_counter() - started) / len(payloads))
    per_event = statistics.median(timings)
    print(f"decode: {per_event * 1e6:.2f} us/event median of {args.runs} runs "
          f"({1 / per_event:,.0f} events/s on one core; {len(payloads)} events, "
          f"{sum(map(len, payloads)) // len(payloads)} bytes each on average)")


if __name__ == "__main__":
    main()
