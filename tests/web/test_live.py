"""Live events (server-sent events fed from NATS) and "probe now" through the bus."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import pytest

from lanscope.config import NatsConfig
from lanscope.runtime.bus import Bus
from schemas import ChangeKind, FieldChange, HostChanged, HostRecord, ProbeRequested, decode
from schemas import subjects as subj
from tests.factories import at
from tests.web.conftest import HOSTILE, SSH, WEB, serving, web_config

pytestmark = [pytest.mark.nats]


def changed(mac: str, ip: str, t: float, *, hostname: str | None = None) -> HostChanged:
    return HostChanged(host_key=mac, observed_at=at(t), source="host_state", kind=ChangeKind.CHANGED,
                       changes=[FieldChange(field="open_ports", old=["tcp/22"], new=[])],
                       host=HostRecord(host_key=mac, mac=mac, ip=ip, hostname=hostname, active=True))


async def frames(response: httpx.Response, count: int) -> AsyncIterator[dict[str, object]]:
    """The first ``count`` lanscope events of a server-sent-events response."""
    block: list[str] = []
    seen = 0
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        fields = dict(item.split(": ", 1) for item in block if ": " in item)
        block = []
        if fields.get("event") == "lanscope":
            yield msgspec.json.decode(fields["data"])
            seen += 1
            if seen >= count:
                return


async def test_changes_reach_an_open_page_filtered_and_escaped(
        tmp_path: Path, store_file: Path, bus: Bus, nats_config: NatsConfig) -> None:
    config = web_config(tmp_path, store_file, nats_url=nats_config.url)
    async with serving(config) as (server, url), httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert server.source.bus is not None
        async with client.stream("GET", "/events", params={"host": WEB[1]}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            await bus.publish(changed(*reversed(SSH), 1))                # another host: filtered out
            await bus.publish(changed(WEB[1], WEB[0], 2, hostname=HOSTILE))
            got = [f async for f in _within(frames(response, 1), 10)]
        assert [(f["kind"], f["host_key"]) for f in got] == [("changed", WEB[1])]
        html = str(got[0]["html"])
        assert "&lt;script&gt;" in html and HOSTILE not in html
        assert "<b>open_ports</b> tcp/22 → \u2013" in html
        # The feed page lists what came, newest first; a reconnect replays what it missed.
        live = await client.get("/live")
        assert live.text.index(WEB[0]) < live.text.index(SSH[0])
        async with client.stream("GET", "/events", headers={"Last-Event-ID": "0"}) as again:
            replayed = [f async for f in _within(frames(again, 2), 10)]
        assert [f["host_key"] for f in replayed] == [SSH[1], WEB[1]]


async def probe_now(client: httpx.AsyncClient, url: str, key: str) -> httpx.Response:
    """Press "probe now" on a host's page, as htmx does (the page's CSRF token, same origin)."""
    page = await client.get(f"/hosts/{key}")
    token = re.search(r'"X-CSRF-Token": "([0-9a-f]+)"', page.text)
    assert token
    return await client.post(f"/hosts/{key}/probe", headers={
        "HX-Request": "true", "X-CSRF-Token": token.group(1), "Origin": url})


async def _within(items: AsyncIterator[dict[str, object]], secs: float) -> AsyncIterator[dict[str, object]]:
    async with asyncio.timeout(secs):
        async for item in items:
            yield item


async def test_probe_now_publishes_a_request_for_port_probe(
        tmp_path: Path, store_file: Path, bus: Bus, nats_config: NatsConfig) -> None:
    requests: asyncio.Queue[ProbeRequested] = asyncio.Queue()

    async def take(msg: object) -> None:
        event = decode(msg.data)                        # type: ignore[attr-defined]
        assert isinstance(event, ProbeRequested)
        await requests.put(event)

    await bus.nc.subscribe(subj.PROBE_REQUESTED, cb=take)
    config = web_config(tmp_path, store_file, nats_url=nats_config.url)
    async with serving(config) as (_, url), httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await probe_now(client, url, SSH[1])
        assert answer.status_code == 200 and "waiting for port_probe" in answer.text
        request = await asyncio.wait_for(requests.get(), 5)
        assert (request.ip, request.mac, request.host_key) == (SSH[0], SSH[1], SSH[1])
        assert request.requested_by.startswith("web ")
        stored = await bus.js.stream_info(subj.REQUESTS.name)
        assert stored.state.messages == 1                # kept for port_probe's durable consumer
        since = re.search(r"since=([^\"&]+)", answer.text)
        assert since
        status = await client.get(f"/hosts/{SSH[1]}/probe", params={"since": httpx.QueryParams(
            "s=" + since.group(1))["s"]})
        assert "waiting for port_probe" in status.text     # nobody probed: still waiting


async def test_probe_now_refuses_an_address_out_of_scope(
        tmp_path: Path, store_file: Path, bus: Bus, nats_config: NatsConfig) -> None:
    config = web_config(tmp_path, store_file, nats_url=nats_config.url)
    config = msgspec.structs.replace(config, scope=msgspec.structs.replace(config.scope, allow=[],
                                                                         exclude=[SSH[0]]))
    async with serving(config) as (_, url), httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await probe_now(client, url, SSH[1])
        assert f"not probed: {SSH[0]} is out of scope: scope.exclude names it" in answer.text
    assert (await bus.js.stream_info(subj.REQUESTS.name)).state.messages == 0


async def test_probe_now_without_a_pipeline_says_so(tmp_path: Path, store_file: Path) -> None:
    async with serving(web_config(tmp_path, store_file)) as (_, url), \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await probe_now(client, url, SSH[1])
        assert "no pipeline is running" in answer.text
