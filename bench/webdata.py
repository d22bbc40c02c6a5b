"""A DuckDB store the size of a big LAN after a year, for the dashboard benchmark and demos.

The hosts go through the real host_state sink (sightings, names, vendors, port
probes, findings), so their records, ports and the file's schema are what the
pipeline writes; the year of history is then added in bulk with SQL (the sink
never reads history back, so it need not be folded): per host a few changes a
day of ``active`` (gone/back), ``ip``, ``hostname``, ``open_ports`` and
``services``, spread over ``days``.

    python -m bench.webdata var/bench-web.duckdb --hosts 10000 --days 365
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lanscope.runtime.ids import fill_producer_ids
from schemas import (
    Event,
    Finding,
    FindingState,
    HostAnnotated,
    HostSeen,
    PortResult,
    PortsProbed,
    PortState,
    Protocol,
    Severity,
    TlsCert,
)
from sinks.host_state import Config, HostState, connect

VENDORS = ["Dell Inc.", "Hewlett Packard", "Apple, Inc.", "Raspberry Pi Trading Ltd", "Intel Corporate",
           "Super Micro Computer, Inc.", "Ubiquiti Inc", "Synology Incorporated", "Cisco Systems, Inc",
           "Samsung Electronics Co.,Ltd", "Espressif Inc.", "Proxmox Server Solutions GmbH"]
SERVICES = [(22, "ssh", "OpenSSH", "9.2p1", "cpe:/a:openbsd:openssh:9.2p1"),
            (80, "http", "nginx", "1.22.1", "cpe:/a:f5:nginx:1.22.1"),
            (443, "https", "nginx", "1.22.1", "cpe:/a:f5:nginx:1.22.1"),
            (3306, "mysql", "MariaDB", "10.11.6", "cpe:/a:mariadb:mariadb:10.11.6"),
            (5432, "postgresql", "PostgreSQL", "15", "cpe:/a:postgresql:postgresql:15"),
            (6379, "redis", "Redis", "7.0.15", "cpe:/a:redis:redis:7.0.15"),
            (1883, "mqtt", "Mosquitto", "2.0.11", None),
            (445, "microsoft-ds", "Samba smbd", "4", None),
            (8006, "https", "Proxmox VE", None, None),
            (9100, "jetdirect", None, None, None)]


def address(i: int) -> str:
    """198.18.0.0/15 (the benchmarking range): data only, nothing is ever sent to these."""
    if i >= 1 << 17:
        return f"198.19.255.{i % 250}"
    return f"198.{18 + (i >> 16)}.{(i >> 8) & 255}.{(i & 255) or 1}"


def mac_of(i: int) -> str:
    return "02:5e:" + ":".join(f"{(i >> shift) & 255:02x}" for shift in (24, 16, 8, 0))


def host_events(i: int, now: datetime, days: int, rng: random.Random) -> list[Event]:
    ip, mac = address(i + 1), mac_of(i + 1)
    key = mac
    first = now - timedelta(days=rng.uniform(1, days), seconds=rng.uniform(0, 3600))
    events: list[Event] = [
        HostSeen(host_key=key, observed_at=first, source="arp", ip=ip, mac=mac, evidence="arp-reply"),
        HostAnnotated(host_key=key, observed_at=first + timedelta(seconds=1), source="dns", ip=ip, mac=mac,
                      hostname=f"host-{i:05d}.lan.example"),
        HostAnnotated(host_key=key, observed_at=first + timedelta(seconds=1), source="mac_vendor", ip=ip,
                      mac=mac, vendor=rng.choice(VENDORS)),
    ]
    ports: list[PortResult] = []
    for port, service, product, version, cpe in rng.sample(SERVICES, rng.randint(0, 4)):
        tls = TlsCert(subject=f"CN=host-{i:05d}.lan.example", issuer="CN=lan CA", self_signed=False,
                      not_after=now + timedelta(days=90), sans=[f"host-{i:05d}.lan.example"]) \
            if service == "https" else None
        ports.append(PortResult(protocol=Protocol.TCP, port=port, state=PortState.OPEN, reason="syn-ack",
                                service=service, product=product, version=version, cpe=[cpe] if cpe else [],
                                tls=tls, banner=f"{product or service} {version or ''}".strip()))
    events.append(PortsProbed(host_key=key, observed_at=first + timedelta(seconds=2), source="port_probe",
                              ip=ip, mac=mac, ports=sorted(ports, key=lambda p: p.port),
                              scanned=["tcp:1-1024"]))
    # Seen recently (online) for ~85% of the hosts.
    if rng.random() < 0.85:
        events.append(HostSeen(host_key=key, observed_at=now - timedelta(seconds=rng.uniform(0, 600)),
                               source="arp", ip=ip, mac=mac, evidence="arp-reply"))
    return events


async def build(path: Path, hosts: int, days: int, changes_per_day: float, seed: int = 7) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    sink = HostState(Config(path=str(path), compact_secs=3600))
    await sink.open()
    started = time.monotonic()
    batch: list[Event] = []
    for i in range(hosts):
        batch.extend(host_events(i, now, days, rng))
        if len(batch) >= 4000:
            fill_producer_ids(batch)
            await sink.write(batch)
            batch = []
    batch += [_finding(i, now, rng) for i in rng.sample(range(hosts), min(hosts // 20, 2000))]
    fill_producer_ids(batch)
    await sink.write(batch)
    await sink.close()
    print(f"{hosts} hosts through host_state in {time.monotonic() - started:.1f} s")
    started = time.monotonic()
    con = connect(path, read_only=False)
    try:
        rows = int(hosts * days * changes_per_day)
        # Per change: a random host and time in the window; fields weighted like a real LAN.
        con.execute(f"""
            INSERT INTO history (host_key, field, old, new, source, observed_at, event_id, recorded_at)
            SELECT h.host_key, f.field, f.old, f.new, f.source, t.at, 'bench-' || g.i::VARCHAR, t.at
            FROM range({rows}) g(i)
            CROSS JOIN LATERAL (SELECT (hash(g.i) % {hosts})::BIGINT AS n) pick
            JOIN (SELECT row_number() OVER (ORDER BY host_key) - 1 AS n, host_key FROM hosts) h USING (n)
            CROSS JOIN LATERAL (SELECT ?::TIMESTAMPTZ
                - to_microseconds((hash(g.i * 7 + 1) % {days * 86400_000_000})::BIGINT) AS at) t
            CROSS JOIN LATERAL (SELECT CASE WHEN hash(g.i * 3) % 10 < 6 THEN 'active'
                                            WHEN hash(g.i * 3) % 10 < 7 THEN 'ip'
                                            WHEN hash(g.i * 3) % 10 < 8 THEN 'hostname'
                                            ELSE 'open_ports' END AS field) fk
            CROSS JOIN LATERAL (SELECT fk.field,
                CASE fk.field WHEN 'active' THEN (CASE WHEN g.i % 2 = 0 THEN 'true' ELSE 'false' END)
                              WHEN 'ip' THEN '"198.18.9.' || (g.i % 250)::VARCHAR || '"'
                              WHEN 'hostname' THEN '"old-name-' || (g.i % 97)::VARCHAR || '.lan.example"'
                              ELSE '["tcp/22"]' END::JSON AS old,
                CASE fk.field WHEN 'active' THEN (CASE WHEN g.i % 2 = 0 THEN 'false' ELSE 'true' END)
                              WHEN 'ip' THEN '"198.18.8.' || (g.i % 250)::VARCHAR || '"'
                              WHEN 'hostname' THEN '"name-' || (g.i % 89)::VARCHAR || '.lan.example"'
                              ELSE '["tcp/22","tcp/80"]' END::JSON AS new,
                CASE fk.field WHEN 'active' THEN 'arp' WHEN 'open_ports' THEN 'port_probe'
                              ELSE 'dns' END AS source) f
            ORDER BY t.at""", [now.isoformat()])
        con.execute("CHECKPOINT")
        [(count,)] = con.execute("SELECT count(*) FROM history").fetchall()
    finally:
        con.close()
    print(f"{count} history rows over {days} days in {time.monotonic() - started:.1f} s; "
          f"{path} is {path.stat().st_size / 1e6:.0f} MB")


def _finding(i: int, now: datetime, rng: random.Random) -> Finding:
    ip, mac = address(i + 1), mac_of(i + 1)
    rule, severity, port = rng.choice([
        ("telnet-open", Severity.HIGH, 23), ("redis-no-auth", Severity.HIGH, 6379),
        ("old-openssh", Severity.MEDIUM, 22), ("self-signed-cert", Severity.LOW, 443)])
    seen = now - timedelta(days=rng.uniform(0, 30))
    return Finding(host_key=mac, observed_at=seen, source="findings", finding_id=f"{rule}:{mac}:{port}",
                   state=FindingState.OPENED if rng.random() < 0.8 else FindingState.RESOLVED, rule=rule,
                   severity=severity, category="exposure", title=f"{rule} on {ip}:{port}", ip=ip, mac=mac,
                   port=port, first_seen=seen, last_seen=seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--changes-per-day", type=float, default=1.5, help="history rows per host per day")
    args = parser.parse_args()
    asyncio.run(build(args.path, args.hosts, args.days, args.changes_per_day))


if __name__ == "__main__":
    main()
