"""The dashboard with two sites sharing one range: a site filter, site chips, host pages by site key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.factories import host_seen, port, ports_probed
from tests.web.conftest import serving, web_config, write_store

MAC = "02:00:00:00:00:0a"


async def two_sites(path: Path) -> None:
    events: list[Any] = []
    for t, site in enumerate(("paris", "berlin")):
        events += [msgspec.structs.replace(e, site=site) for e in (
            host_seen("10.20.0.5", MAC, t=t), host_seen("10.20.0.6", f"02:00:00:00:0{t}:06", t=t),
            ports_probed("10.20.0.5", MAC, [port(22, service="ssh")], t=t + 1))]
    events.append(host_seen("198.18.0.10", "02:00:00:00:00:10", t=3))       # a host of the default site
    await write_store(path, events)


async def test_the_hosts_page_filters_by_site_and_a_site_host_has_its_page(tmp_path: Path) -> None:
    store = tmp_path / "sites.duckdb"
    await two_sites(store)
    async with serving(web_config(tmp_path, store)) as (_, url), \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        page = (await client.get("/hosts")).text
        assert '<select name="site"' in page and ">paris (2/2 online)<" in page
        assert page.count('title="site">paris<') == 2 and page.count('title="site">berlin<') == 2
        paris = (await client.get("/hosts", params={"site": "paris"})).text
        assert "2 hosts" in paris and 'title="site">berlin<' not in paris
        default = (await client.get("/hosts", params={"site": ""})).text
        assert "1 host" in default and "198.18.0.10" in default
        every = (await client.get("/hosts", params={"site": "*"})).text
        assert "5 hosts" in every
        host = await client.get(f"/hosts/paris%2F{MAC}")
        assert host.status_code == 200
        assert "<dt>Site</dt><dd>paris</dd>" in host.text and "tcp/22" in host.text
        assert (await client.get(f"/hosts/berlin/{MAC}")).status_code == 200
