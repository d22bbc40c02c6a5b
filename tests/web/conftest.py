"""The dashboard against a real DuckDB file written by the real host_state sink, served by
the real server (uvicorn in the test's event loop) on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from lanscope.config import Config, parse
from lanscope.runtime.ids import content_id
from lanscope.web.server import WebServer, bind
from schemas import Finding, FindingState, PortState, Severity, TlsCert
from sinks.host_state import Config as HostStateConfig
from sinks.host_state import HostState
from tests.factories import at, host_annotated, host_seen, port, ports_probed

HOSTILE = '<script>alert("pwned")</script>'
HOSTILE_BANNER = "<img src=x onerror=alert(1)>"
SSH = ("198.18.0.10", "02:00:00:00:00:10")
WEB = ("198.18.0.11", "02:00:00:00:00:11")
EVIL = ("198.18.0.66", "02:00:00:00:00:66")
ASLEEP = ("198.18.1.20", "02:00:00:00:01:20")
OFFLINK = ("198.19.0.5", None)


async def build_store(path: Path) -> None:
    """Five hosts through the real sink: services, a TLS certificate, a finding, a hostile name."""
    events: list[Any] = [
        host_seen(*SSH), host_annotated(*SSH, hostname="ssh.lab.example", t=1),
        host_annotated(*SSH, source="mac_vendor", vendor="Dell Inc.", t=1),
        ports_probed(*SSH, [port(22, service="ssh", product="OpenSSH", version="9.2p1",
                                 cpe=["cpe:/a:openbsd:openssh:9.2p1"], banner="SSH-2.0-OpenSSH_9.2p1")], t=2),
        host_seen(*WEB, t=3), host_annotated(*WEB, hostname="www.lab.example", t=4),
        host_annotated(*WEB, source="mac_vendor", vendor="Raspberry Pi Trading Ltd", t=4),
        ports_probed(*WEB, [port(80, service="http", product="nginx", version="1.22.1"),
                            port(443, service="https", product="nginx", version="1.22.1", tunnel="ssl",
                                 tls=TlsCert(subject="CN=www.lab.example", issuer="CN=lab CA",
                                             sans=["www.lab.example"], not_after=at(86400 * 90),
                                             self_signed=False))], t=5),
        host_seen(*EVIL, t=6), host_annotated(*EVIL, hostname=HOSTILE, t=7),
        ports_probed(*EVIL, [port(21, service="ftp", banner=HOSTILE_BANNER)], t=8),
        host_seen(*ASLEEP, alive=False, evidence="neighbour:STALE", source="neighbour", t=9),
        host_seen(*OFFLINK, source="icmp", t=10),
        ports_probed(*SSH, [port(22, service="ssh", product="OpenSSH", version="9.2p1",
                                 cpe=["cpe:/a:openbsd:openssh:9.2p1"]),
                            port(2222, PortState.OPEN, service="ssh", product="Dropbear")], t=20),
        Finding(host_key=EVIL[1], observed_at=at(9), source="findings", finding_id="ftp-open:evil",
                state=FindingState.OPENED, rule="ftp-open", severity=Severity.HIGH, category="exposure",
                title=f"FTP on {EVIL[0]} ({HOSTILE})", ip=EVIL[0], mac=EVIL[1], port=21,
                first_seen=at(9), last_seen=at(9)),
    ]
    await write_store(path, events)


async def write_store(path: Path, events: list[Any]) -> None:
    """``events`` (ids from their content) through the real host_state sink into ``path``."""
    for event in events:
        event.id = content_id(event)
    sink = HostState(HostStateConfig(path=str(path)))
    await sink.open()
    await sink.write(events)
    await sink.close()


@pytest.fixture(scope="session")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("webstore") / "lanscope.duckdb"
    asyncio.run(build_store(path))
    return path


def web_config(tmp_path: Path, store: Path, nats_url: str = "", **web: Any) -> Config:
    raw: dict[str, Any] = {"data_dir": str(tmp_path / "var"), "sinks": {"host_state": {"path": str(store)}},
                           "nats": {"url": nats_url}, "scope": {"allow": ["198.18.0.0/15"]},
                           "web": {"port": 0, **web}}
    return parse(raw, env={})


@asynccontextmanager
async def serving(config: Config) -> AsyncIterator[tuple[WebServer, str]]:
    server = WebServer(config, bind(config), url=config.nats.url or None)
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.ready.wait(), 10)
    try:
        yield server, server.url.rstrip("/")
    finally:
        server.stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def site(tmp_path: Path, store_file: Path) -> AsyncIterator[tuple[WebServer, httpx.AsyncClient]]:
    """The dashboard on the file (no pipeline), with a client."""
    async with serving(web_config(tmp_path, store_file)) as (server, url), \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield server, client


def decode_frames(text: str) -> list[dict[str, Any]]:
    """The ``event: lanscope`` frames of a server-sent-events body."""
    frames = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if lines.get("event") == "lanscope":
            frames.append(msgspec.json.decode(lines["data"]))
    return frames


_SHOTS = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def web_screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests leave their screenshots (printed at the end of the run);
    LANSCOPE_ARTIFACTS=DIR puts them in DIR/web-screenshots instead."""
    import os

    root = os.environ.get("LANSCOPE_ARTIFACTS")
    path = Path(root) / "web-screenshots" if root else tmp_path_factory.getbasetemp() / "web-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[_SHOTS] = path
    return path


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    path = config.stash.get(_SHOTS, None)
    if path is not None:
        shots = sorted(p.name for p in path.glob("*.png"))
        terminalreporter.write_line(f"web screenshots: {path} ({', '.join(shots) or 'none'})")
