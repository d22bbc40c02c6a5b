"""The pages. Each reads through Dashboard.source (the one query path) and renders a template;
requests from htmx (HX-Request) get the part of the page they replace."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from lanscope.net.scope import ScopeGuard
from lanscope.runtime.observe import last_sweeps, pipeline_health
from lanscope.web import charts, queries
from lanscope.web.app import Dashboard
from lanscope.web.auth import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE
from lanscope.web.format import as_time, decoded
from lanscope.web.live import KINDS, Filter, TooManyStreams
from lanscope.web.source import DataError, rows
from schemas import ProbeRequested

log = logging.getLogger(__name__)
_MAX_FORM = 64 * 1024
CHART_WINDOWS = {"24h": 24, "7d": 24 * 7, "30d": 24 * 30}
PRESENCE_DAYS = 7
HISTORY_DAYS = 90              # the host page's history window, unless ?history=all
PROBE_WAIT_SECS = 180
# Host columns the host page shows in their own places; any other column (a newer schema's)
# is listed at the end of the identity card as it is.
SHOWN_FIELDS = frozenset({
    "host_key", "mac", "ip", "ips", "hostname", "vendor", "mac_randomized", "os_hint", "services",
    "open_ports", "dhcp_type", "dhcp_status", "dhcp_comment", "active", "vm_name", "vm_id", "vm_type",
    "vm_node", "vm_status", "first_seen", "last_seen", "last_evidence", "last_evidence_at",
    "last_seen_by", "flapping", "site", "device_type"})


def _dash(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def _partial(request: Request) -> bool:
    """An htmx request for a part of the page (a history restore wants the whole page)."""
    return "hx-request" in request.headers and "hx-history-restore-request" not in request.headers


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (at most 64 KiB), first value of each field."""
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise HTTPException(413, "form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _csrf_ok(request: Request, form: dict[str, str]) -> bool:
    if request.scope.get("lanscope.bearer"):
        return True                        # no ambient credential: no forgery to fear
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    return _dash(request).guard.csrf_ok(request.cookies.get(SESSION_COOKIE), token)


# ---------------------------------------------------------------------- overview


async def overview(request: Request) -> Response:
    dash = _dash(request)
    return dash.render(request, "overview.html", **await _overview_context(request))


async def overview_panels(request: Request) -> Response:
    dash = _dash(request)
    return dash.render(request, "_overview_panels.html", **await _overview_context(request))


async def _overview_context(request: Request) -> dict[str, Any]:
    dash = _dash(request)
    window = request.query_params.get("window", "24h")
    hours = CHART_WINDOWS.get(window, 24)
    now = datetime.now(UTC)
    context: dict[str, Any] = {"window": window if window in CHART_WINDOWS else "24h",
                               "windows": list(CHART_WINDOWS), "error": None, "health": None,
                               "sweeps": [], "recent": [], "events": dash.live.matching(Filter(), 12)}
    # The pipeline's health (NATS round trips) is asked while the store answers.
    health = (asyncio.ensure_future(asyncio.gather(pipeline_health(dash.source.bus),
                                                   last_sweeps(dash.source.bus)))
              if dash.source.bus is not None else None)
    try:
        counts, presence, findings, moves, changes, recent = await dash.source.queries(
            queries.overview_queries(now, hours))
    except DataError as exc:
        context["error"] = str(exc)
        if health is not None:
            health.cancel()
        return context
    start = now - timedelta(hours=hours)
    totals = rows(counts)[0]
    context.update(totals=totals, presence=rows(presence)[0], recent=rows(recent),
                   findings={r["severity"]: r["n"] for r in rows(findings)})
    context["online_chart"] = charts.line_chart(_online_series(totals["online"] or 0, rows(moves), start),
                                                start, now, "hosts online")
    day = now - timedelta(hours=24)
    first_bucket = day.replace(minute=0, second=0, microsecond=0)
    context["changes_chart"] = charts.bar_chart(
        [(t, float(r["changes"])) for r in rows(changes) if (t := as_time(r["bucket"])) is not None],
        first_bucket, now, timedelta(hours=1), "changes per hour")
    if health is not None:
        try:
            context["health"], context["sweeps"] = await health
        except Exception as exc:
            log.debug("pipeline health: %s", exc)
    return context


def _online_series(online_now: int, moves: list[dict[str, Any]],
                   start: datetime) -> list[tuple[datetime, float]]:
    """Hosts online from ``start`` on, walked back from the hosts online now through each
    bucket's comings (+1) and goings (-1)."""
    series: list[tuple[datetime, float]] = []
    level = float(online_now)
    for move in reversed(moves):
        at = as_time(move["bucket"])
        if at is None:
            continue
        series.append((at, level))
        level -= float(move["delta"] or 0)
    series.reverse()
    return [(start, level), *series]


# ---------------------------------------------------------------------- hosts


async def hosts(request: Request) -> Response:
    dash = _dash(request)
    flt = queries.HostFilter.from_query(request.query_params, dash.config.web.page_size)
    context: dict[str, Any] = {"f": flt, "hosts": [], "total": 0, "error": None, "vendors": [], "sites": [],
                               "sorts": queries.SORTS, "sizes": queries.PAGE_SIZES}
    try:
        wanted = [queries.hosts_page(flt)]
        if not _partial(request):
            wanted += [queries.VENDORS, queries.SITES]
        results = await dash.source.queries(wanted)
        found = rows(results[0])
        context.update(hosts=found, total=found[0]["total"] if found else 0)
        if len(results) > 1:
            context["vendors"] = rows(results[1])
            found_sites = rows(results[2])
            context["sites"] = found_sites if any(r["site"] for r in found_sites) else []
    except (queries.FilterError, DataError) as exc:
        context["error"] = str(exc)
    context["pages"] = max(1, -(-context["total"] // flt.size))
    return dash.render(request, "_hosts_table.html" if _partial(request) else "hosts.html", **context)


async def host(request: Request) -> Response:
    dash = _dash(request)
    key = request.path_params["key"]
    now = datetime.now(UTC)
    since = now - timedelta(days=PRESENCE_DAYS)
    all_history = request.query_params.get("history") == "all"
    history_since = None if all_history else now - timedelta(days=HISTORY_DAYS)
    try:
        record, ports, findings, history, moves = await dash.source.queries(
            queries.host_queries(key, since, history_since))
    except DataError as exc:
        return dash.render(request, "error.html", status=503, message=str(exc))
    if not record.rows:
        return dash.render(request, "error.html", status=404,
                           message=f"No host {key!r} in the store.")
    host_row = rows(record)[0]
    by_field: dict[str, list[dict[str, Any]]] = {}
    for row in rows(history):
        by_field.setdefault(row["field"], []).append(row)
    timeline = [(t, _flag(m["old"]), decoded(m["new"]) is True)
                for m in rows(moves) if (t := as_time(m["observed_at"]))]
    port_rows = rows(ports)
    for port in port_rows:
        port["tls"] = decoded(port["tls"]) if port["tls"] else None
    context = {
        "key": key, "host": host_row, "ports": port_rows, "findings": rows(findings),
        "history": by_field, "history_rows": len(history.rows), "all_history": all_history,
        "history_days": HISTORY_DAYS,
        "seen_by": decoded(host_row.get("last_seen_by")) or {},
        "timeline": charts.presence(timeline, since, now, host_row.get("active"),
                                    as_time(host_row.get("first_seen"))),
        "device_type": (host_row["device_type"] if host_row.get("device_type") not in (None, "unknown")
                        else next((p["device_type"] for p in port_rows if p["device_type"]), None)),
        "events": dash.live.matching(Filter(host=key), 20),
        "shown_fields": SHOWN_FIELDS,
    }
    return dash.render(request, "_host_body.html" if _partial(request) else "host.html", **context)


def _flag(raw: Any) -> bool | None:
    value = decoded(raw)
    return value if isinstance(value, bool) else None


async def probe(request: Request) -> Response:
    """Probe now: a ProbeRequested on the bus, for port_probe; refused outside scope."""
    dash = _dash(request)
    key = request.path_params["key"]
    form = await _form(request)
    if not _csrf_ok(request, form):
        return PlainTextResponse("missing or wrong CSRF token: reload the page\n", status_code=403)
    try:
        found = rows(await dash.source.query(*queries.host_address(key)))
    except DataError as exc:
        return _probe_answer(dash, request, error=str(exc))
    if not found or not found[0]["ip"]:
        return _probe_answer(dash, request, error=f"no address known for {key}")
    ip, mac, site = str(found[0]["ip"]), found[0]["mac"], str(found[0]["site"] or "")
    # Another site's host is probed by that site's sensor, which applies its own scope; this
    # machine's scope says nothing about that site's ranges.
    refusal = None if site != dash.config.site else ScopeGuard(dash.config.scope).refusal(ip)
    if refusal is not None:
        return _probe_answer(dash, request, error=f"not probed: {refusal}")
    bus = dash.source.bus
    if bus is None:
        return _probe_answer(dash, request, error="no pipeline is running: probe now needs `lanscope run` "
                                                  "(with port_probe)")
    now = datetime.now(UTC)
    who = "web " + (request.client.host if request.client else "?")
    try:
        await bus.publish(ProbeRequested(host_key=key, observed_at=now, source="web", ip=ip, mac=mac,
                                         site=site, requested_by=who), retry_for_secs=5)
    except Exception as exc:
        return _probe_answer(dash, request, error=f"could not ask the pipeline: {exc}")
    log.info("web: probe of %s (%s) requested by %s", key, ip, who)
    return _probe_answer(dash, request, since=now, ip=ip)


def _probe_answer(dash: Dashboard, request: Request, *, error: str | None = None,
                  since: datetime | None = None, ip: str | None = None,
                  result: str | None = None) -> Response:
    key = request.path_params["key"]
    return dash.render(request, "_probe.html", status=200, key=key, error=error, ip=ip, result=result,
                       since=since.isoformat() if since else None, waiting=since is not None and not result)


async def probe_status(request: Request) -> Response:
    """Has port_probe reported since the request? (polled by the probe box)."""
    dash = _dash(request)
    since = as_time(request.query_params.get("since", ""))
    if since is None:
        return PlainTextResponse("since: an ISO timestamp please\n", status_code=400)
    try:
        status = rows(await dash.source.query(*queries.probe_status(request.path_params["key"])))[0]
    except DataError as exc:
        return _probe_answer(dash, request, error=str(exc))
    reported = max((t for t in (as_time(status["ports_at"]), as_time(status["evidence_at"])) if t),
                   default=None)
    if reported is not None and reported >= since - timedelta(seconds=1):
        response = _probe_answer(dash, request, since=since,
                                 result=f"probed at {reported.astimezone():%H:%M:%S}: "
                                        f"{status['open_ports']} open port(s)")
        response.headers["HX-Trigger"] = "lanscope-refresh"
        return response
    if (datetime.now(UTC) - since).total_seconds() > PROBE_WAIT_SECS:
        return _probe_answer(dash, request, error=f"no result from port_probe after {PROBE_WAIT_SECS} s: "
                                                  "is it running? (see Pipeline health on the overview)")
    return _probe_answer(dash, request, since=since)


# ---------------------------------------------------------------------- live


def _live_filter(request: Request) -> Filter:
    kinds = request.query_params.getlist("kind")
    return Filter.from_query(request.query_params, kinds)


async def live(request: Request) -> Response:
    dash = _dash(request)
    flt = _live_filter(request)
    query = request.url.query
    return dash.render(request, "live.html", f=flt, kinds=KINDS, events=dash.live.matching(flt, 200),
                       stream_url="/events" + (f"?{query}" if query else ""))


async def events(request: Request) -> Response:
    """Server-sent events: host changes and findings as they happen, filtered like /live."""
    dash = _dash(request)
    flt = _live_filter(request)
    last = request.headers.get("last-event-id", "")
    stream = dash.live.stream(flt, int(last) if last.isdigit() else None)
    try:
        first = await anext(stream)        # refused here (too many streams) before any byte is sent
    except TooManyStreams as exc:
        return PlainTextResponse(f"{exc}\n", status_code=503, headers={"Retry-After": "10"})
    except StopAsyncIteration:
        return PlainTextResponse("shutting down\n", status_code=503)

    pipeline = "true" if dash.source.bus is not None else "false"

    async def body() -> Any:
        yield first
        yield f'event: status\ndata: {{"pipeline": {pipeline}}}\n\n'
        async for chunk in stream:
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------------- findings, query


async def findings(request: Request) -> Response:
    dash = _dash(request)
    state = request.query_params.get("state", "opened")
    severity = request.query_params.get("severity", "")
    q = request.query_params.get("q", "").strip()[:200]
    context: dict[str, Any] = {"state": state, "severity": severity, "q": q, "found": [], "total": 0,
                               "error": None}
    try:
        found = rows(await dash.source.query(*queries.findings_page(state, severity, q, 500)))
        context.update(found=found, total=found[0]["total"] if found else 0)
    except DataError as exc:
        context["error"] = str(exc)
    return dash.render(request, "findings.html", **context)


EXAMPLE_SQL = ("SELECT ip, mac, hostname, vendor, os_hint, open_ports\nFROM hosts\nWHERE active\n"
               "ORDER BY ipv4\nLIMIT 100")


async def query(request: Request) -> Response:
    """SQL in, table out, through the same bounded read-only path as `lanscope query`."""
    dash = _dash(request)
    context: dict[str, Any] = {"sql": EXAMPLE_SQL, "result": None, "error": None, "elapsed_ms": None}
    if request.method == "POST":
        form = await _form(request)
        if not _csrf_ok(request, form):
            return PlainTextResponse("missing or wrong CSRF token: reload the page\n", status_code=403)
        context["sql"] = form.get("sql", "")
        started = asyncio.get_running_loop().time()
        try:
            context["result"] = await dash.source.query(context["sql"])
        except DataError as exc:
            context["error"] = str(exc)
        context["elapsed_ms"] = (asyncio.get_running_loop().time() - started) * 1000
    return dash.render(request, "query.html", **context)


# ---------------------------------------------------------------------- sign-in


async def login(request: Request) -> Response:
    dash = _dash(request)
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"                       # no open redirect
    if not dash.guard.required:
        return RedirectResponse(target, status_code=303)
    error = None
    if request.method == "POST":
        form = await _form(request)
        client = request.client.host if request.client else "?"
        if not _csrf_ok(request, form):
            error = "The form expired: try again."
        elif dash.guard.blocked(client):
            return dash.render(request, "login.html", status=429, next=target,
                               error="Too many failed sign-ins: wait a few minutes.")
        else:
            session = dash.guard.login(form.get("secret", ""), client)
            if session is not None:
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(SESSION_COOKIE, session, max_age=int(dash.guard.session_secs),
                                    httponly=True, samesite="strict", secure=request.url.scheme == "https")
                return response
            log.warning("web: failed sign-in from %s", client)
            error = "Wrong token or password."
    return dash.render(request, "login.html", status=401 if error else 200, next=target, error=error)


async def logout(request: Request) -> Response:
    dash = _dash(request)
    form = await _form(request)
    if not _csrf_ok(request, form):
        return PlainTextResponse("missing or wrong CSRF token\n", status_code=403)
    dash.guard.logout(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def not_found(request: Request, exc: Exception) -> Response:
    dash = _dash(request)
    return dash.render(request, "error.html", status=404, message=f"Nothing at {quote(request.url.path)}.")
