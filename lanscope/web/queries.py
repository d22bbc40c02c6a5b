"""The SQL of the pages. User input reaches DuckDB only as ``?`` parameters; what cannot be a
parameter (a sort column, a direction) is picked from a fixed table by name."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import urlencode

from sinks.host_state import QueryParam

# sort name -> ORDER BY (ascending; "{d}" becomes ASC or DESC)
SORTS: dict[str, str] = {
    "ip": "ipv4 {d} NULLS LAST, ipv6 {d} NULLS LAST, host_key {d}",
    "mac": "mac {d} NULLS LAST, host_key",
    "hostname": "lower(hostname) {d} NULLS LAST, ipv4",
    "vendor": "lower(vendor) {d} NULLS LAST, ipv4",
    "os": "lower(os_hint) {d} NULLS LAST, ipv4",
    "vm": "lower(vm_name) {d} NULLS LAST, ipv4",
    "first_seen": "first_seen {d} NULLS LAST, ipv4",
    "last_seen": "last_seen {d} NULLS LAST, ipv4",
    "state": "active {d}, ipv4",
    "site": "site {d}, ipv4 NULLS LAST, host_key",
}
PAGE_SIZES = (25, 50, 100, 200, 500)
STATES = ("online", "offline")
_SEARCHED = "lower(concat_ws(' ', host_key, site, ip, mac, hostname, vendor, vm_name, os_hint, " \
            "array_to_string(ips, ' ')))"


class FilterError(ValueError):
    """A filter value that cannot be used (shown next to the form)."""


@dataclass(frozen=True)
class HostFilter:
    q: str = ""
    state: str = ""
    vendor: str = ""
    service: str = ""
    subnet: str = ""
    site: str | None = None              # None: every site; "": the default site
    sort: str = "ip"
    desc: bool = False
    page: int = 1
    size: int = 50
    default_size: int = 50               # web.page_size: a link leaves the size out when it is this

    @classmethod
    def from_query(cls, query: Mapping[str, str], default_size: int) -> HostFilter:
        def number(name: str, default: int) -> int:
            try:
                return int(query.get(name, "") or default)
            except ValueError:
                return default

        size = number("size", default_size)
        def text(name: str, limit: int) -> str:
            return query.get(name, "").strip()[:limit]

        state, sort = query.get("state", ""), query.get("sort", "ip")
        site = query.get("site")
        return cls(q=text("q", 200), state=state if state in STATES else "", vendor=text("vendor", 200),
                   service=text("service", 100), subnet=text("subnet", 60),
                   site=None if site is None or site == "*" else site.strip()[:32],
                   sort=sort if sort in SORTS else "ip",
                   desc=query.get("dir") == "desc", page=max(number("page", 1), 1),
                   size=size if 1 <= size <= 500 else default_size, default_size=default_size)

    def link(self, **changes: object) -> str:
        """The query string of this filter with ``changes`` (paging, sorting links)."""
        target = replace(self, **changes)  # type: ignore[arg-type]
        pairs = {"q": target.q, "state": target.state, "vendor": target.vendor, "service": target.service,
                 "subnet": target.subnet, "sort": target.sort if target.sort != "ip" else "",
                 "site": target.site or "",
                 "dir": "desc" if target.desc else "", "page": str(target.page) if target.page > 1 else "",
                 "size": str(target.size) if target.size != target.default_size else ""}
        return "?" + urlencode({k: v for k, v in pairs.items() if v})

    def sort_link(self, name: str) -> str:
        return self.link(sort=name, desc=not self.desc if self.sort == name else False, page=1)


def _subnet_bounds(text: str) -> tuple[str, str, str]:
    """(column, low, high) of a CIDR; FilterError if it is not one."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FilterError(f"subnet: {text!r} is not a network (like 192.168.1.0/24)") from None
    column = "ipv4" if network.version == 4 else "ipv6"
    return column, str(int(network.network_address)), str(int(network.broadcast_address))


def hosts_page(f: HostFilter) -> tuple[str, list[QueryParam]]:
    """One page of the hosts list, each row with the total count of matching hosts."""
    where: list[str] = []
    params: list[QueryParam] = []
    if f.q:
        where.append(f"contains({_SEARCHED}, ?)")
        params.append(f.q.lower())
    if f.state:
        where.append("active" if f.state == "online" else "NOT active")
    if f.vendor:
        where.append("vendor = ?")
        params.append(f.vendor)
    if f.site is not None:
        where.append("site = ?")
        params.append(f.site)
    if f.service:
        where.append("(list_contains(open_ports, ?) OR contains(lower(array_to_string(services, '|')), ?))")
        params += [f.service.lower(), f.service.lower()]
    if f.subnet:
        column, low, high = _subnet_bounds(f.subnet)
        kind = "UINTEGER" if column == "ipv4" else "UHUGEINT"
        where.append(f"{column} BETWEEN ?::{kind} AND ?::{kind}")
        params += [low, high]
    order = SORTS[f.sort].format(d="DESC" if f.desc else "ASC")
    sql = f"""
        WITH matching AS (
            SELECT host_key, site, ip, ipv4, ipv6, mac, hostname, vendor, vm_name, os_hint, services,
                   open_ports, first_seen, last_seen, active, device_type, count(*) OVER () AS total
            FROM hosts {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY {order} LIMIT ? OFFSET ?)
        SELECT m.* EXCLUDE (ipv4, ipv6, device_type),
            -- the host's classification; else what a port's service fingerprint says
            coalesce(nullif(m.device_type, 'unknown'), (
                SELECT min(p.device_type) FROM host_ports p
                WHERE p.host_key = m.host_key AND p.device_type IS NOT NULL)) AS device_type
        FROM matching m ORDER BY {order}"""
    params += [f.size, (f.page - 1) * f.size]
    return sql, params


VENDORS: tuple[str, list[QueryParam]] = (
    "SELECT vendor, count(*) AS hosts FROM hosts WHERE vendor IS NOT NULL "
    "GROUP BY vendor ORDER BY hosts DESC, vendor LIMIT 300", [])
SITES: tuple[str, list[QueryParam]] = (
    "SELECT site, count(*) AS hosts, count(*) FILTER (WHERE active) AS online FROM hosts "
    "GROUP BY site ORDER BY site LIMIT 300", [])


# ---------------------------------------------------------------------- one host

def host_queries(key: str, since: datetime, history_since: datetime | None = None,
                 ) -> list[tuple[str, Sequence[QueryParam]]]:
    """Record, ports, findings, history (since ``history_since``; None: all of it) and the
    presence changes since ``since`` of one host. History is appended in time order, so a
    window lets DuckDB skip the older row groups: a year's worth costs ~4x more to read."""
    window = "" if history_since is None else " AND observed_at >= ?::TIMESTAMPTZ"
    history_params: list[QueryParam] = [key]
    if history_since is not None:
        history_params.append(history_since.isoformat())
    return [
        ("SELECT * EXCLUDE (state, ipv4, ipv6) FROM hosts WHERE host_key = ?", [key]),
        ("SELECT protocol, port, state, reason, service, product, version, extra_info, cpe, tunnel, "
         "http_status, http_title, tls, auth_required, os_hint, device_type, banner, first_seen, "
         "last_seen, state_since FROM host_ports WHERE host_key = ? "
         "ORDER BY state <> 'open', protocol, port", [key]),
        ("SELECT finding_id, state, rule, severity, category, title, port, evidence, first_seen, "
         "last_seen FROM findings WHERE host_key = ? OR (ip, site) = "
         "(SELECT (ip, site) FROM hosts WHERE host_key = ?) "
         "ORDER BY state = 'resolved', severity, rule", [key, key]),
        ("SELECT observed_at, field, old, new, source FROM history WHERE host_key = ?" + window
         + " ORDER BY observed_at DESC LIMIT 2000", history_params),
        # Presence: the changes of `active` in the window, and the last one before it.
        ("(SELECT observed_at, old, new FROM history WHERE host_key = ? AND field = 'active' "
         " AND observed_at < ?::TIMESTAMPTZ ORDER BY observed_at DESC LIMIT 1) "
         "UNION ALL (SELECT observed_at, old, new FROM history WHERE host_key = ? AND field = 'active' "
         " AND observed_at >= ?::TIMESTAMPTZ) ORDER BY observed_at", [key, since.isoformat(), key,
                                                                      since.isoformat()]),
    ]


def probe_status(key: str) -> tuple[str, list[QueryParam]]:
    """When port_probe last reported on this host (its ports' last sight, its evidence clock)."""
    return ("SELECT (SELECT max(last_seen) FROM host_ports WHERE host_key = ?) AS ports_at, "
            "(SELECT count(*) FROM host_ports WHERE host_key = ? AND state = 'open') AS open_ports, "
            "(SELECT json_extract_string(last_seen_by, '$.port_probe') FROM hosts WHERE host_key = ?) "
            "AS evidence_at", [key, key, key])


def host_address(key: str) -> tuple[str, list[QueryParam]]:
    return "SELECT ip, mac, site FROM hosts WHERE host_key = ?", [key]


# ---------------------------------------------------------------------- overview

def overview_queries(now: datetime, chart_hours: int) -> list[tuple[str, Sequence[QueryParam]]]:
    day = (now - timedelta(hours=24)).isoformat()
    lately = (now - timedelta(hours=25)).isoformat()
    window = (now - timedelta(hours=chart_hours)).isoformat()
    bucket = "1 hour" if chart_hours <= 24 * 7 else "6 hours"
    return [
        ("SELECT count(*) AS hosts, count(*) FILTER (WHERE active) AS online, "
         "count(*) FILTER (WHERE first_seen >= ?::TIMESTAMPTZ) AS new_24h FROM hosts", [day]),
        # Back: came up in the window after having gone. A new host's first `active` row is
        # false -> true too, stamped by the event of its first batch that brought it up, which
        # can be later than its first_seen; so for hosts first seen lately (their first active
        # row is among the rows read) back means a later rise than their first; older hosts'
        # first rows are long past. Reads only the window's rows (history is in time order).
        ("WITH moves AS (SELECT host_key, new::VARCHAR = 'true' AS up, observed_at, "
         "  observed_at >= ?::TIMESTAMPTZ AS inside FROM history "
         "  WHERE field = 'active' AND observed_at >= ?::TIMESTAMPTZ), "
         "per AS (SELECT host_key, max(observed_at) FILTER (WHERE up AND inside) AS came, "
         "  min(observed_at) AS first_move, bool_or(inside AND NOT up) AS went FROM moves GROUP BY host_key) "
         "SELECT count(*) FILTER (WHERE went) AS gone_24h, count(*) FILTER (WHERE came IS NOT NULL "
         "  AND (h.first_seen < ?::TIMESTAMPTZ OR came > first_move)) AS back_24h "
         "FROM per LEFT JOIN hosts h USING (host_key)", [day, lately, lately]),
        ("SELECT severity, count(*) AS n FROM findings WHERE state = 'opened' GROUP BY severity", []),
        # Hosts coming (+1) and going (-1) per bucket: walked back from the hosts online now.
        (f"SELECT time_bucket(INTERVAL '{bucket}', observed_at) AS bucket, sum(CASE "
         "WHEN new::VARCHAR = 'true' AND coalesce(old::VARCHAR, 'null') <> 'true' THEN 1 "
         "WHEN new::VARCHAR = 'false' AND old::VARCHAR = 'true' THEN -1 ELSE 0 END) AS delta "
         "FROM history WHERE field = 'active' AND observed_at >= ?::TIMESTAMPTZ "
         "GROUP BY bucket ORDER BY bucket",
         [window]),
        ("SELECT time_bucket(INTERVAL '1 hour', observed_at) AS bucket, "
         "count(DISTINCT event_id) AS changes FROM history WHERE observed_at >= ?::TIMESTAMPTZ "
         "GROUP BY bucket ORDER BY bucket", [day]),
        ("SELECT h.observed_at, h.host_key, h.field, h.old, h.new, s.ip, s.hostname FROM "
         "(SELECT * FROM history ORDER BY observed_at DESC LIMIT 12) h "
         "LEFT JOIN hosts s USING (host_key) ORDER BY h.observed_at DESC", []),
    ]


# ---------------------------------------------------------------------- findings

def findings_page(state: str, severity: str, q: str, limit: int) -> tuple[str, list[QueryParam]]:
    where: list[str] = []
    params: list[QueryParam] = []
    if state in ("opened", "resolved"):
        where.append("f.state = ?")
        params.append(state)
    if severity:
        where.append("f.severity = ?")
        params.append(severity)
    if q:
        where.append("contains(lower(concat_ws(' ', f.rule, f.title, f.site, f.ip, f.mac, f.host_key, "
                     "h.hostname)), ?)")
        params.append(q.lower())
    sql = ("SELECT f.finding_id, f.state, f.rule, f.severity, f.category, f.title, f.host_key, f.ip, "
           "f.port, f.first_seen, f.last_seen, h.hostname, count(*) OVER () AS total FROM findings f "
           "LEFT JOIN hosts h ON h.host_key = f.host_key "
           f"{'WHERE ' + ' AND '.join(where) if where else ''} "
           "ORDER BY f.state = 'resolved', CASE f.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 "
           "WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END, f.last_seen DESC LIMIT ?")
    return sql, [*params, limit]
