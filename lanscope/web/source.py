"""Where the dashboard's data comes from, and its connection to the bus.

Queries take the one bounded, read-only path of ``lanscope query``: the DuckDB
owner (host_state) over ``lanscope.query`` while a pipeline runs, else the file
opened read-only for the queries of one page and closed again (so a pipeline can
start and take it). The bus connection is kept up in the background: when a
pipeline appears later, the dashboard joins it (live events, health, probe now).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lanscope.commands.query import ask_file, ask_pipeline
from lanscope.config import Config
from lanscope.errors import LanscopeError
from lanscope.runtime.bus import Bus
from lanscope.runtime.locate import configured_url
from lanscope.runtime.observe import Follower
from schemas import AnyEvent
from schemas import subjects as subj
from sinks.host_state import QueryParam, QueryResult

log = logging.getLogger(__name__)

Query = tuple[str, Sequence[QueryParam]]
RETRY_SECS = 5.0


class DataError(LanscopeError):
    """A page's data could not be read; the message says why (shown on the page)."""


class Source:
    """The dashboard's queries and bus, for one process."""

    def __init__(self, config: Config, *, url: str | None = None,
                 on_event: Callable[[AnyEvent, str], Awaitable[None]] | None = None,
                 backlog: int = 500) -> None:
        self.config = config
        self.url = url
        self.bus: Bus | None = None
        self.on_event = on_event
        self.backlog = backlog
        self.mode = "file"                  # what answered the last query: pipeline | file
        self._follower: Follower | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    # ------------------------------------------------------------------ bus

    async def start(self) -> None:
        """Connect now if a bus is there (waits briefly), and keep trying in the background."""
        self._task = asyncio.create_task(self._keep_connected(), name="web:bus")
        if not (self.url or configured_url(self.config.nats, self.config.data_dir)):
            return                          # no pipeline now: serve the file, join one later
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), self.config.nats.connect_timeout_secs + 1)

    async def _keep_connected(self) -> None:
        while self.bus is None:
            url = self.url or configured_url(self.config.nats, self.config.data_dir)
            if url:
                try:
                    await self._connect(url)
                    return
                except Exception as exc:
                    log.debug("web: no bus at %s yet (%s)", url, exc)
            await asyncio.sleep(RETRY_SECS)

    async def _connect(self, url: str) -> None:
        from lanscope.runtime.auth import WEB, client_config

        bus = await Bus.connect(client_config(self.config.nats, self.config.data_dir, WEB), url=url,
                                name="lanscope-web", role=WEB)
        bus.layout = self.config.layout()
        if self.on_event is not None:
            follower = Follower(bus, subj.CHANGES.name,
                                list(subj.everywhere(subj.HOST_CHANGED, subj.FINDING)),
                                self.on_event, backlog=self.backlog)
            try:
                await follower.start()
            except Exception:
                await bus.close()
                raise
            self._follower = follower
        self.bus = bus
        self._connected.set()
        log.info("web: following the pipeline on %s", url)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._follower is not None:
            await self._follower.close()
        if self.bus is not None:
            await self.bus.close()

    # ------------------------------------------------------------------ queries

    async def queries(self, items: Sequence[Query]) -> list[QueryResult]:
        """Answer every query of one page, from one place (the pipeline, else the file)."""
        timeout = self.config.sinks.host_state.query.timeout_ms / 1000
        try:
            if self.bus is not None:
                answers = await asyncio.gather(*(ask_pipeline(self.bus, sql, params, timeout_secs=timeout)
                                                 for sql, params in items))
                if all(a is not None for a in answers):
                    self.mode = "pipeline"
                    return [a for a in answers if a is not None]
            results = await asyncio.to_thread(ask_file, self.config, list(items), warn_lagging=False)
            self.mode = "file"
            return results
        except LanscopeError as exc:
            raise DataError(str(exc)) from None

    async def query(self, sql: str, params: Sequence[QueryParam] = ()) -> QueryResult:
        return (await self.queries([(sql, params)]))[0]


def rows(result: QueryResult) -> list[dict[str, Any]]:
    """A result's rows as dicts by column name."""
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
