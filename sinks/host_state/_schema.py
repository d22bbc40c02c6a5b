"""The host_state DuckDB file: its tables, their migrations, and how it is opened.

IPs are stored as text plus integers (``ipv4 UINTEGER``, ``ipv6 UHUGEINT``):
the ``inet`` extension would be downloaded at run time, which lanscope never does.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

# The host tables as version 1 made them (migration 1 must not change: it is shipped).
_HOST_COLUMNS = """
    host_key VARCHAR NOT NULL,
    ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT, ips VARCHAR[],
    hostname VARCHAR, vendor VARCHAR, mac_randomized BOOLEAN, os_hint VARCHAR,
    services VARCHAR[], open_ports VARCHAR[],
    dhcp_type VARCHAR, dhcp_status VARCHAR, dhcp_comment VARCHAR, arp_state VARCHAR,
    active BOOLEAN NOT NULL,
    vm_name VARCHAR, vm_id BIGINT, vm_type VARCHAR, vm_node VARCHAR, vm_status VARCHAR,
    first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
    last_evidence VARCHAR, last_evidence_at TIMESTAMPTZ, missed_sweeps INTEGER,
    last_seen_by JSON,
    state JSON NOT NULL
"""
# Version 3: what hosts say about themselves and the device type (issue 23), before
# first_seen: _rows writes a row as its head (compared, rewritten on change) then its clocks.
_HOST_COLUMNS_V3 = _HOST_COLUMNS.replace("""
    first_seen TIMESTAMPTZ,""", """
    names JSON, advertised VARCHAR[], model VARCHAR, manufacturer VARCHAR, workgroup VARCHAR,
    dhcp_fingerprint VARCHAR, dhcp_vendor_class VARCHAR, sys_object_id VARCHAR, sys_descr VARCHAR,
    interfaces VARCHAR[], neighbours VARCHAR[],
    device_type VARCHAR, device_type_confidence INTEGER, device_type_reasons VARCHAR[],
    first_seen TIMESTAMPTZ,""")
# Version 4: the site, after the clocks (a host's site never changes: it is in its key).
_HOST_COLUMNS_V4 = _HOST_COLUMNS_V3 + ",\n    site VARCHAR NOT NULL DEFAULT ''\n"


def _rebuild_hosts(columns: str, *, by_host_key: bool = False) -> str:
    """Recreate both host tables with ``columns`` (in that order), keeping every row;
    ``by_host_key``: hosts_by_mac keyed by host_key, not by its MAC (schema 4: sites)."""
    steps = ["DROP VIEW hosts;"]
    mac_key = "mac VARCHAR NOT NULL, " if by_host_key else "mac VARCHAR PRIMARY KEY, "
    for table, key in (("hosts_by_mac", mac_key), ("hosts_by_ip", "")):
        primary = "" if key and not by_host_key else ", PRIMARY KEY (host_key)"
        steps += [f"ALTER TABLE {table} RENAME TO {table}_old;",
                  f"CREATE TABLE {table} ({key}{columns}{primary});",
                  f"INSERT INTO {table} BY NAME SELECT * FROM {table}_old;",
                  f"DROP TABLE {table}_old;"]
    steps.append("CREATE VIEW hosts AS "
                 "SELECT * FROM hosts_by_mac UNION ALL BY NAME SELECT * FROM hosts_by_ip;")
    return "\n".join(steps)

# Each entry migrates the schema from version i to i+1. Never edit a shipped one: append.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE hosts_by_mac (mac VARCHAR PRIMARY KEY, {_HOST_COLUMNS});
    CREATE TABLE hosts_by_ip ({_HOST_COLUMNS}, PRIMARY KEY (host_key));
    CREATE VIEW hosts AS
        SELECT * FROM hosts_by_mac UNION ALL BY NAME SELECT * FROM hosts_by_ip;
    CREATE TABLE history (
        host_key VARCHAR NOT NULL, field VARCHAR NOT NULL, old JSON, new JSON,
        source VARCHAR, observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR,
        recorded_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE host_ports (
        host_key VARCHAR NOT NULL, ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT,
        protocol VARCHAR NOT NULL, port INTEGER NOT NULL, state VARCHAR NOT NULL, reason VARCHAR,
        service VARCHAR, product VARCHAR, version VARCHAR, extra_info VARCHAR,
        banner VARCHAR, os_hint VARCHAR, device_type VARCHAR, cpe VARCHAR[], tunnel VARCHAR,
        http_status INTEGER, http_title VARCHAR, tls JSON, auth_required BOOLEAN, method VARCHAR,
        first_seen TIMESTAMPTZ NOT NULL, last_seen TIMESTAMPTZ NOT NULL,
        state_since TIMESTAMPTZ NOT NULL, result JSON NOT NULL,
        PRIMARY KEY (host_key, protocol, port));
    CREATE VIEW services AS
        SELECT host_key, ip, protocol, port, service, product, version, extra_info,
               first_seen, last_seen
        FROM host_ports WHERE state = 'open' AND service IS NOT NULL;
    CREATE TABLE findings (
        finding_id VARCHAR PRIMARY KEY, state VARCHAR NOT NULL, rule VARCHAR NOT NULL,
        severity VARCHAR NOT NULL, category VARCHAR, title VARCHAR, host_key VARCHAR,
        ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT, mac VARCHAR, port INTEGER, evidence VARCHAR,
        first_seen TIMESTAMPTZ, last_seen TIMESTAMPTZ,
        observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR);
    CREATE TABLE registry (
        entry_id VARCHAR PRIMARY KEY, action VARCHAR, ip VARCHAR, ipv4 UINTEGER, ipv6 UHUGEINT,
        internal_ip VARCHAR, hostname VARCHAR, mac VARCHAR, os_hint VARCHAR,
        services VARCHAR[], owner VARCHAR, notes VARCHAR, last_seen TIMESTAMPTZ,
        observed_at TIMESTAMPTZ NOT NULL, event_id VARCHAR);
    CREATE TABLE processed_events (event_id VARCHAR PRIMARY KEY, processed_at TIMESTAMPTZ NOT NULL);
    CREATE TABLE outbox (
        input_id VARCHAR NOT NULL, output_id VARCHAR NOT NULL, payload VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL);
    CREATE INDEX outbox_input ON outbox (input_id);
    """,
    # 2: the host journal (see _write); processed ids one row per batch, not one per id.
    """
    CREATE TABLE host_journal (seq BIGINT NOT NULL, written_at TIMESTAMPTZ NOT NULL, facts BLOB NOT NULL);
    CREATE TABLE processed_batches (processed_at TIMESTAMPTZ NOT NULL, event_ids VARCHAR NOT NULL);
    INSERT INTO processed_batches
        SELECT processed_at, string_agg(event_id, chr(10)) FROM processed_events GROUP BY processed_at;
    DROP TABLE processed_events;
    CREATE VIEW processed_events AS
        SELECT unnest(string_split(event_ids, chr(10))) AS event_id, processed_at
        FROM processed_batches;
    """,
    # 3: names by source, advertised services, model, DHCP fingerprint, SNMP, device type.
    _rebuild_hosts(_HOST_COLUMNS_V3),
    # 4: sites. Every host, port, history row, finding and registry entry says its site ('' is
    # the default site); a host's key holds it (schemas.site_key), so hosts_by_mac is keyed by
    # host_key: one MAC may be a host at two sites.
    "DROP VIEW services;\n" + _rebuild_hosts(_HOST_COLUMNS_V4, by_host_key=True) + """
    ALTER TABLE host_ports ADD COLUMN site VARCHAR NOT NULL DEFAULT '';
    ALTER TABLE history ADD COLUMN site VARCHAR NOT NULL DEFAULT '';
    ALTER TABLE findings ADD COLUMN site VARCHAR NOT NULL DEFAULT '';
    ALTER TABLE registry ADD COLUMN site VARCHAR NOT NULL DEFAULT '';
    CREATE VIEW services AS
        SELECT host_key, site, ip, protocol, port, service, product, version, extra_info,
               first_seen, last_seen
        FROM host_ports WHERE state = 'open' AND service IS NOT NULL;
    """,
    # 5: flapping (a fact), round-trip time and TTL (observations), at the end: _rows updates
    # them in place with the clocks; history is what was published (issue 18).
    """
    ALTER TABLE hosts_by_mac ADD COLUMN flapping BOOLEAN;
    ALTER TABLE hosts_by_mac ADD COLUMN rtt_ms DOUBLE;
    ALTER TABLE hosts_by_mac ADD COLUMN ttl INTEGER;
    ALTER TABLE hosts_by_ip ADD COLUMN flapping BOOLEAN;
    ALTER TABLE hosts_by_ip ADD COLUMN rtt_ms DOUBLE;
    ALTER TABLE hosts_by_ip ADD COLUMN ttl INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The database cannot be opened or has a schema this version does not know."""


# DuckDB checkpoints on the commit that takes its write-ahead log past this (default 16 MB).
# Such a checkpoint costs more the more rows the journal has (deleted ones too, until a
# checkpoint), at ~300 bytes per fact: at the default, commits cost 3-8 us per fact with a
# compaction every 5 s and up to 20 us with 700,000 facts journaled; at 256 MB, under 1 us.
# Replaying a WAL that size after a crash takes ~0.4 s at open.
CHECKPOINT_THRESHOLD = "256MB"
def connect(path: Path, *, read_only: bool, memory_limit_mb: int | None = None,
            threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """Open the file; no file-system access from SQL (queries cannot read or write other files).

    ``memory_limit_mb``/``threads``: DuckDB's limits for everything on this database. Nothing
    spills to a temporary directory (an expensive query fails instead of filling the disk),
    and freed memory goes back to the system at once (allocator background threads)."""
    config: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}
    if memory_limit_mb is not None:
        config |= {"memory_limit": f"{memory_limit_mb}MB", "temp_directory": "",
                   "allocator_flush_threshold": "32MB", "allocator_background_threads": True}
    if threads is not None:
        config["threads"] = threads
    if not read_only:
        config["checkpoint_threshold"] = CHECKPOINT_THRESHOLD
    try:
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:   # IOException: another process holds the lock
        raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables, or bring an older file up to SCHEMA_VERSION (one transaction each)."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    version = int(current[0]) if current else 0
    if version > SCHEMA_VERSION:
        raise StoreError(f"database schema version {version} is newer than this lanscope "
                         f"knows ({SCHEMA_VERSION}); upgrade lanscope")
    for number in range(version, SCHEMA_VERSION):
        con.execute("BEGIN")
        try:
            con.execute(MIGRATIONS[number])
            con.execute("INSERT INTO schema_version VALUES (?, now())", [number + 1])
            con.execute("COMMIT")
        except Exception:
            rollback(con)
            raise


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back a failed transaction. A COMMIT that failed (no space for the WAL) has ended
    it already, and a second error ("cannot rollback - no transaction is active") would hide
    the first, the one that says what went wrong."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass
