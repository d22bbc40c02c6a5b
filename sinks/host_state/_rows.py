"""Host, port, finding and registry rows of the host_state tables, and how they are written.

Compaction writes rows with the Appender (never ``executemany``: ~100x slower).
DuckDB upserts keep the *first* of duplicate keys in one statement, so rows
arrive here already de-duplicated by key (the fold produces one row per host
and port; findings and registry rows are reduced newest-wins by the caller)
and replace existing rows with delete-then-append inside the transaction.
The store remembers every committed row minus its clock columns: a row whose
rest is unchanged becomes one narrow ``UPDATE ... FROM unnest(...)`` per table
instead of a delete and a 29-column append; rows equal to the committed ones
are not written at all. Timestamps cross into those statements as integer
microseconds (``make_timestamptz``): converting aware ``datetime`` objects is
much of the Appender's cost.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import msgspec

from schemas import Finding, PortState, Protocol, RegistryEntry

from .records import HostEntry

_entry_encoder = msgspec.json.Encoder()

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# A host row is (host_key .. first_seen | last_seen .. state, flapping, rtt_ms, ttl): the
# columns from _HOST_CLOCKS on change with sightings (or, like flapping, were added by a
# migration at the end) and are updated in place; a change before it rewrites the row.
# A port row's only such column is last_seen (_PORT_LAST_SEEN).
_HOST_CLOCKS = 36
_PORT_LAST_SEEN = 23
_PORT_TLS, _PORT_RESULT = 19, 25     # the JSON columns of a port row (see port_rows)
_TEXT: dict[Any, str] = {m: m.value for m in (*Protocol, *PortState)}   # no enum descriptor per use
_UPDATE_HOST_CLOCKS = """
    UPDATE {table} SET last_seen = make_timestamptz(u.ls), last_evidence = u.le,
        last_evidence_at = make_timestamptz(u.lea), missed_sweeps = u.ms, last_seen_by = u.lsb,
        state = u.st, flapping = u.fl, rtt_ms = u.rtt, ttl = u.ttl
    FROM (SELECT unnest($1) AS k, unnest($2) AS ls, unnest($3) AS le, unnest($4) AS lea,
                 unnest($5) AS ms, unnest($6) AS lsb, unnest($7) AS st, unnest($8) AS fl,
                 unnest($9::DOUBLE[]) AS rtt, unnest($10::INTEGER[]) AS ttl) AS u
    WHERE {table}.host_key = u.k"""
_UPDATE_PORT_LAST_SEEN = """
    UPDATE host_ports SET last_seen = make_timestamptz(u.ls)
    FROM (SELECT unnest($1) AS k, unnest($2) AS pr, unnest($3) AS po, unnest($4) AS ls) AS u
    WHERE host_ports.host_key = u.k AND host_ports.protocol = u.pr AND host_ports.port = u.po"""
_DELETE_PORTS = """
    DELETE FROM host_ports USING (SELECT unnest($1) AS k, unnest($2) AS pr, unnest($3) AS po) AS d
    WHERE host_ports.host_key = d.k AND host_ports.protocol = d.pr AND host_ports.port = d.po"""


def _micros(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND



@functools.lru_cache(maxsize=65536)
def ip_ints(ip: str | None) -> tuple[int | None, int | None]:
    """(ipv4, ipv6) integer columns for an IP text."""
    if not ip:
        return None, None
    try:   # inet_pton: strict dotted quads, ~10x faster than ipaddress for the usual case
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big"), None
    except OSError:
        pass
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None, None
    return (int(addr), None) if addr.version == 4 else (None, int(addr))


def json_text(value: Any) -> str:
    if value is None:      # most history rows of a new host start from nothing
        return "null"
    return _entry_encoder.encode(value).decode()


def clocks_at(table: str) -> int:
    """Index of the first clock column of a `table` row (hosts_by_mac starts with the MAC)."""
    return _HOST_CLOCKS + (table == "hosts_by_mac")


def host_row(entry: HostEntry, table: str) -> tuple[Any, ...]:
    """The row of `table`: its head (host_head), then the clock columns, then the site (a
    host's site never changes: it is part of its key), then flapping, rtt_ms and ttl
    (schema 5; updated in place with the clocks)."""
    r = entry.record
    state = msgspec.structs.replace(entry, ports={})
    return (*host_head(entry, table), r.last_seen, entry.last_evidence, entry.last_evidence_at,
            entry.missed_sweeps, json_text(r.last_seen_by), json_text(state), r.site, r.flapping,
            r.rtt_ms, r.ttl)


def host_head(entry: HostEntry, table: str) -> tuple[Any, ...]:
    """A `table` row up to its clock columns (hosts_by_mac starts with the MAC)."""
    r = entry.record
    v4, v6 = ip_ints(r.ip)
    mac = (r.mac,) if table == "hosts_by_mac" else ()
    return (*mac, r.host_key, r.ip, v4, v6, list(r.ips), r.hostname, r.vendor, r.mac_randomized, r.os_hint,
            list(r.services), list(r.open_ports), r.dhcp_type, r.dhcp_status, r.dhcp_comment,
            r.arp_state, r.active, r.vm_name, r.vm_id, r.vm_type, r.vm_node, r.vm_status,
            json_text(r.names) if r.names else None, list(r.advertised), r.model, r.manufacturer,
            r.workgroup, r.dhcp_fingerprint, r.dhcp_vendor_class, r.sys_object_id, r.sys_descr,
            list(r.interfaces), list(r.neighbours), r.device_type, r.device_type_confidence,
            list(r.device_type_reasons),
            r.first_seen)


def port_head(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A port row without last_seen (what decides between rewriting it and updating last_seen)."""
    return row[:_PORT_LAST_SEEN] + row[_PORT_LAST_SEEN + 1:]


def port_rows(entry: HostEntry) -> list[tuple[Any, ...]]:
    """The host's host_ports rows, with the two JSON columns (tls, result) still the structs
    themselves: rows are compared far more often than written (a re-probe repeats most
    ports), structs compare without encoding and are never changed in place by the fold.
    port_values() encodes them for writing."""
    r = entry.record
    v4, v6 = ip_ints(r.ip)
    rows = []
    for row in entry.ports.values():
        p = row.result
        rows.append((r.host_key, r.ip, v4, v6, _TEXT[p.protocol], p.port, _TEXT[p.state], p.reason,
                     p.service, p.product, p.version, p.extra_info, p.banner, p.os_hint,
                     p.device_type, list(p.cpe), p.tunnel, p.http_status, p.http_title,
                     p.tls, p.auth_required, p.method,
                     row.first_seen, row.last_seen, row.state_since, p, r.site))
    return rows


def port_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A port_rows() row as the Appender takes it."""
    tls = row[_PORT_TLS]
    return (*row[:_PORT_TLS], json_text(tls) if tls else None, *row[_PORT_TLS + 1:_PORT_RESULT],
            json_text(row[_PORT_RESULT]), *row[_PORT_RESULT + 1:])


def finding_row(f: Finding) -> tuple[Any, ...]:
    v4, v6 = ip_ints(f.ip)
    return (f.finding_id, f.state.value, f.rule, f.severity.value, f.category, f.title, f.host_key,
            f.ip, v4, v6, f.mac, f.port, f.evidence, f.first_seen, f.last_seen, f.observed_at,
            f.id or None, f.site)


def registry_row(e: RegistryEntry) -> tuple[Any, ...]:
    v4, v6 = ip_ints(e.ip)
    return (e.entry_id, e.action, e.ip, v4, v6, e.internal_ip, e.hostname, e.mac, e.os_hint,
            list(e.services), e.owner, e.notes, e.last_seen, e.observed_at, e.id or None, e.site)


def write_hosts(con: duckdb.DuckDBPyConnection, table: str,
                 rows: list[tuple[tuple[Any, ...], tuple[Any, ...] | None]],
                 heads: dict[tuple[str, str], tuple[Any, ...]]) -> None:
    """Append new and changed host rows; only the clocks of the others (see _HOST_CLOCKS).
    ``rows``: (row, the head the table holds); ``heads`` gets the heads written."""
    at = clocks_at(table)
    replaced: list[str] = []
    appended: list[tuple[Any, ...]] = []
    clocks: list[tuple[Any, ...]] = []
    for row, stored in rows:
        head = row[:at]
        if stored == head:
            clocks.append(row)
            continue
        key = row[at - _HOST_CLOCKS]
        if stored is not None:
            replaced.append(key)
        appended.append(row)
        heads[(table, key)] = head
    if replaced:
        con.execute(f"DELETE FROM {table} WHERE host_key IN (SELECT unnest(?))", [replaced])
    if appended:
        with con.appender(table) as app:
            app.append_rows(appended)
    if clocks:
        columns = list(zip(*(r[at:] for r in clocks), strict=True))
        con.execute(_UPDATE_HOST_CLOCKS.format(table=table), [
            [r[at - _HOST_CLOCKS] for r in clocks],
            [_micros(v) for v in columns[0]], list(columns[1]),
            [_micros(v) for v in columns[2]], list(columns[3]), list(columns[4]),
            list(columns[5]), list(columns[7]), list(columns[8]), list(columns[9])])   # [6]: the site

def write_ports(con: duckdb.DuckDBPyConnection,
                 ports: list[tuple[str, list[str], list[tuple[Any, ...]], dict[str, tuple[Any, ...]]]],
                 heads: dict[str, dict[str, tuple[Any, ...]]]) -> None:
    """Append new and changed port rows, delete vanished ones, update the rest's last_seen.
    ``ports``: (host_key, names, rows, the heads the table holds)."""
    gone: list[tuple[str, str, int]] = []
    appended: list[tuple[Any, ...]] = []
    seen: list[tuple[str, str, int, int | None]] = []
    for key, names, rows, stored in ports:
        current: dict[str, tuple[Any, ...]] = {}
        for name, row in zip(names, rows, strict=True):
            head = current[name] = port_head(row)
            before = stored.get(name)
            if before == head:
                seen.append((key, row[4], row[5], _micros(row[_PORT_LAST_SEEN])))
                continue
            if before is not None:
                gone.append((key, row[4], row[5]))
            appended.append(row)
        for name, before in stored.items():
            if name not in current:
                gone.append((key, before[4], before[5]))
        heads[key] = current
    if gone:
        con.execute(_DELETE_PORTS, [list(c) for c in zip(*gone, strict=True)])
    if appended:
        with con.appender("host_ports") as app:
            app.append_rows(port_values(row) for row in appended)
    if seen:
        con.execute(_UPDATE_PORT_LAST_SEEN, [list(c) for c in zip(*seen, strict=True)])

def replace_newer(con: duckdb.DuckDBPyConnection, table: str, key: str,
                   rows: list[tuple[Any, ...]]) -> None:
    """Upsert rows whose observed_at is not older than the stored one (rows unique by key)."""
    staging = f"{table}_in"
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT * FROM {table} LIMIT 0")
    con.execute(f"DELETE FROM {staging}")
    with con.appender(staging) as app:
        app.append_rows(rows)
    con.execute(f"DELETE FROM {staging} s USING {table} t "
                f"WHERE s.{key} = t.{key} AND s.observed_at < t.observed_at")
    con.execute(f"DELETE FROM {table} t USING {staging} s WHERE t.{key} = s.{key}")
    con.execute(f"INSERT INTO {table} SELECT * FROM {staging}")
