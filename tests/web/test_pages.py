"""The pages over HTTP: what they list, filters, sort, paging, escaping, the query page."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from lanscope.web.queries import HostFilter
from lanscope.web.server import WebServer
from tests.web.conftest import ASLEEP, EVIL, HOSTILE, HOSTILE_BANNER, OFFLINK, SSH, WEB, serving, web_config

Site = tuple[WebServer, httpx.AsyncClient]


def listed(html: str) -> list[str]:
    """The host keys of the hosts table, in order."""
    return re.findall(r'<tr data-host-key="([^"]+)"', html)


async def test_the_hosts_page_lists_every_host_with_its_columns(site: Site) -> None:
    _, client = site
    page = await client.get("/hosts")
    assert page.status_code == 200
    assert listed(page.text) == [SSH[1], WEB[1], EVIL[1], ASLEEP[1], OFFLINK[0]]     # by IP
    assert "5 hosts" in page.text
    for text in ("ssh.lab.example", "Dell Inc.", "02:00:00:00:00:10", "tcp/22 ssh", "tcp/2222 ssh"):
        assert text in page.text


@pytest.mark.parametrize(("query", "expected"), [
    ({"q": "www"}, [WEB[1]]),
    ({"q": "02:00:00:00:00:1"}, [SSH[1], WEB[1]]),
    ({"q": "DELL"}, [SSH[1]]),
    ({"state": "offline"}, [ASLEEP[1]]),
    ({"state": "online", "subnet": "198.18.0.0/24"}, [SSH[1], WEB[1], EVIL[1]]),
    ({"vendor": "Raspberry Pi Trading Ltd"}, [WEB[1]]),
    ({"service": "ssh"}, [SSH[1]]),
    ({"service": "tcp/443"}, [WEB[1]]),
    ({"subnet": "198.19.0.0/24"}, [OFFLINK[0]]),
    ({"q": "'; DROP TABLE hosts; --"}, []),
    ({"sort": "hostname", "dir": "desc", "state": "online"}, [WEB[1], SSH[1], EVIL[1], OFFLINK[0]]),
])
async def test_filters_and_sort(site: Site, query: dict[str, str], expected: list[str]) -> None:
    _, client = site
    page = await client.get("/hosts", params=query)
    assert page.status_code == 200
    assert listed(page.text) == expected


async def test_a_bad_subnet_is_said_next_to_the_form(site: Site) -> None:
    _, client = site
    page = await client.get("/hosts", params={"subnet": "10.0.0.0/33"})
    assert "subnet: &#39;10.0.0.0/33&#39; is not a network" in page.text
    assert listed(page.text) == []


async def test_server_side_paging(site: Site) -> None:
    _, client = site
    first = await client.get("/hosts", params={"size": "2"})
    second = await client.get("/hosts", params={"size": "2", "page": "2"})
    last = await client.get("/hosts", params={"size": "2", "page": "3"})
    assert listed(first.text) == [SSH[1], WEB[1]]
    assert listed(second.text) == [EVIL[1], ASLEEP[1]]
    assert listed(last.text) == [OFFLINK[0]]
    assert "page 2 of 3" in second.text
    assert 'href="/hosts?page=3&amp;size=2"' in second.text      # next/last links keep the filter


async def test_an_htmx_request_gets_only_the_table(site: Site) -> None:
    _, client = site
    part = await client.get("/hosts", params={"q": "ssh"}, headers={"HX-Request": "true"})
    assert part.text.lstrip().startswith('<div id="hosts-table"')
    assert "<html" not in part.text and listed(part.text) == [SSH[1]]


async def test_the_host_page_shows_services_certificate_history_and_findings(site: Site) -> None:
    _, client = site
    page = await client.get(f"/hosts/{WEB[1]}")
    assert page.status_code == 200
    text = page.text
    for expected in ("www.lab.example", "tcp/80", "tcp/443", "nginx 1.22.1", "CN=www.lab.example",
                     "issuer CN=lab CA", "Raspberry Pi Trading Ltd", "Presence", "<svg class=\"timeline\""):
        assert expected in text, expected
    ssh = (await client.get(f"/hosts/{SSH[1]}", params={"history": "all"})).text
    assert "cpe:/a:openbsd:openssh:9.2p1" in ssh and "Dropbear" in ssh
    assert re.search(r"<b>open_ports</b>", ssh)                 # each field's history
    recent = (await client.get(f"/hosts/{SSH[1]}")).text       # the store's facts are from T0
    assert "<b>open_ports</b>" not in recent and "last 90 days" in recent and "?history=all" in recent
    evil = (await client.get(f"/hosts/{EVIL[1]}")).text
    assert "ftp-open" in evil                                   # the host's finding


async def test_an_unknown_host_is_a_404_page(site: Site) -> None:
    _, client = site
    page = await client.get("/hosts/02:00:00:00:99:99")
    assert page.status_code == 404 and "No host" in page.text


async def test_hostile_names_and_banners_are_escaped_everywhere(site: Site) -> None:
    _, client = site
    for path in ("/hosts", f"/hosts/{EVIL[1]}", "/findings", "/"):
        text = (await client.get(path)).text
        assert HOSTILE not in text and HOSTILE_BANNER not in text, path
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in (await client.get("/hosts")).text
    assert "&lt;img src=x onerror=alert(1)&gt;" in (await client.get(f"/hosts/{EVIL[1]}")).text


async def test_every_response_carries_a_strict_content_security_policy(site: Site) -> None:
    _, client = site
    page = await client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text                           # no inline script anywhere


async def test_overview_counts_and_charts(site: Site) -> None:
    _, client = site
    page = await client.get("/")
    assert page.status_code == 200
    assert re.search(r'<span class="n">4</span><span class="l">online now</span><span class="s">of 5 known',
                     page.text)
    assert page.text.count('<svg class="chart"') + page.text.count("No data in this window") == 2
    assert "No pipeline is running" in page.text


async def test_findings_page_lists_open_findings(site: Site) -> None:
    _, client = site
    page = await client.get("/findings")
    assert "ftp-open" in page.text and "1 finding" in page.text
    assert "No findings here" in (await client.get("/findings", params={"state": "resolved"})).text


async def test_the_query_page_runs_read_only_sql_and_refuses_the_rest(site: Site) -> None:
    server, client = site
    form = await client.get("/query")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
    assert token
    origin = {"Origin": str(client.base_url).rstrip("/")}
    result = await client.post("/query", headers=origin,
                               data={"csrf": token.group(1), "sql": "SELECT count(*) AS n FROM hosts"})
    assert result.status_code == 200 and "<th>n</th>" in result.text and "<td>5</td>" in result.text
    refused = await client.post("/query", data={"csrf": token.group(1), "sql": "DELETE FROM hosts"},
                                headers=origin)
    assert "read-only queries only" in refused.text
    assert server.dashboard.source.mode == "file"


async def test_the_device_type_is_the_hosts_classification(site: Site) -> None:
    """host_state classifies every host (issue 23): both pages show that, not only what a
    port's service fingerprint says."""
    _, client = site
    hosts = (await client.get("/hosts")).text
    row = re.search(rf'<tr data-host-key="{re.escape(WEB[1])}".*?</tr>', hosts, re.S)
    assert row is not None and "<td>server</td>" in row.group(0)
    page = (await client.get(f"/hosts/{WEB[1]}")).text
    assert "<dt>Device type</dt><dd>server</dd>" in page
    assert "<dt>device_type</dt>" not in page                    # not a second time, raw, below


async def test_overview_counts_a_host_back_only_after_it_was_gone(tmp_path: Path, store_file: Path) -> None:
    """A new host's first `active` row (false -> true) may be stamped after its first_seen:
    it is not `back`. In the lab the overview said "51 back" of 51 brand-new hosts."""
    store = tmp_path / "store.duckdb"
    shutil.copy(store_file, store)
    now = datetime.now(UTC)

    def active(host: str, old: bool, new: bool, minutes_ago: float) -> tuple[object, ...]:
        when = now - timedelta(minutes=minutes_ago)
        return (host, "active", str(old).lower(), str(new).lower(), "arp", when, "e", when)
    con = duckdb.connect(str(store))
    try:
        first_seen = now - timedelta(hours=1)
        con.execute("UPDATE hosts_by_mac SET first_seen = ? WHERE mac = ?", [first_seen, SSH[1]])
        con.execute("UPDATE hosts_by_mac SET first_seen = ? WHERE mac = ?", [now - timedelta(minutes=40),
                                                                            ASLEEP[1]])
        con.executemany("INSERT INTO history (host_key, field, old, new, source, observed_at, event_id, "
                        "recorded_at) VALUES (?, ?, ?::JSON, ?::JSON, ?, ?, ?, ?)", [
            active(SSH[1], False, True, 59),                                  # new, a second after first_seen
            active(WEB[1], True, False, 30), active(WEB[1], False, True, 20),  # gone, back
            active(EVIL[1], True, False, 10),                                 # gone
            active(ASLEEP[1], False, True, 39), active(ASLEEP[1], True, False, 20),
            active(ASLEEP[1], False, True, 5),                                # new, gone, back
        ])
    finally:
        con.close()
    async with serving(web_config(tmp_path, store)) as (_, url), httpx.AsyncClient(base_url=url) as client:
        page = (await client.get("/")).text
    gone = r'<span class="n">3</span><span class="l">gone</span><span class="s">last 24 h \(2 back\)'
    assert re.search(gone, page), page


def test_paging_links_keep_a_size_other_than_the_configured_one() -> None:
    configured = HostFilter.from_query({}, default_size=20)
    assert configured.link(page=2) == "?page=2"
    asked = HostFilter.from_query({"size": "50"}, default_size=20)
    assert asked.link(page=2) == "?page=2&size=50"               # was dropped: 50 was hard-coded
