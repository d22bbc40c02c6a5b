"""What every stage bound to the bus shares, and the producer's schedule.

A ``StageRunner`` holds one stage with its spec, counters, ``stage=`` log and
the process's stop signal, and answers the query subject for a stage that
has ``query()``. ``ProducerRunner`` calls ``sweep()`` every ``interval_secs``
and publishes what it returns; ``ListenerRunner`` publishes each batch a
streaming producer's ``listen()`` yields, as it comes; the consuming kinds are
in lanscope.runtime.consume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from lanscope.runtime.bus import Bus
from lanscope.runtime.delivery import Counters, RunnerOptions, StageLog, one_line
from lanscope.runtime.ids import fill_producer_ids
from lanscope.runtime.topology import StageSpec
from schemas import Event
from schemas import subjects as subj

log = logging.getLogger(__name__)

QUERY_QUEUE = "lanscope-query"
H_QUERY_ERROR = "Lanscope-Error"


class StageRunner:
    """What every kind of stage shares: counters, logging, the stop signal, queries."""

    def __init__(self, spec: StageSpec, stage: Any, bus: Bus, options: RunnerOptions,
                 stopping: asyncio.Event) -> None:
        self.spec = spec
        self.stage = stage
        self.bus = bus
        self.options = options
        self.stopping = stopping
        self.counters = Counters()
        self.log = StageLog(log, {"stage": spec.name})
        self.done = False             # finished its work (--once) or stopped
        self._query_sub: Subscription | None = None
        self._answering: set[asyncio.Task[None]] = set()

    @property
    def ack_wait(self) -> float:
        return self.spec.ack_wait_secs or self.options.ack_wait_secs

    async def start(self) -> None:
        query = getattr(self.stage, "query", None)
        if callable(query):
            self._query_sub = await self.bus.nc.subscribe(subj.QUERY, queue=QUERY_QUEUE,
                                                          cb=self._serve_query)
            self.log.info("answering queries on %s", subj.QUERY)

    async def _serve_query(self, msg: Msg) -> None:
        # Each request in a task of its own: a slow query must not hold up the next ones (the
        # subscription hands its messages over one at a time). The stage bounds how many run.
        if msg.reply:
            task = asyncio.create_task(self._answer(msg))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _answer(self, msg: Msg) -> None:
        try:
            reply: bytes = await self.stage.query(msg.data)
            await self.bus.nc.publish(msg.reply, reply)
        except Exception as exc:
            with contextlib.suppress(Exception):      # the connection may be closing
                await self.bus.nc.publish(msg.reply, b"", headers={
                    H_QUERY_ERROR: one_line(f"{type(exc).__name__}: {exc}")})

    async def stop_serving(self) -> None:
        """No new queries; the running ones end when the stage closes (it interrupts them)."""
        if self._query_sub is not None:
            with contextlib.suppress(Exception):
                await self._query_sub.unsubscribe()
            self._query_sub = None

    async def run(self) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        """After the stage stopped: close what it holds (a sink's store)."""

    async def idle(self) -> bool:
        """True when this stage has nothing left to do (for --once)."""
        return self.done


class _Publishing(StageRunner):
    async def _publish(self, events: list[Event]) -> int:
        """Publish a producer's events (of this process's site; ids from their content); the
        duplicates dropped."""
        fill_producer_ids(events, self.bus.layout.site)
        acks = await self.bus.publish_events(events)
        self.counters.events_emitted_total += len(events)
        return sum(bool(ack.duplicate) for ack in acks)


class ProducerRunner(_Publishing):
    async def run(self) -> None:
        interval = float(getattr(self.stage, "interval_secs", 0) or 0)
        while not self.stopping.is_set():
            started = time.monotonic()
            await self._sweep_once()
            if self.options.once or interval <= 0:
                break
            remaining = interval - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(remaining, 0.0))
        self.done = True

    async def _sweep_once(self) -> None:
        started = time.monotonic()
        try:
            events: list[Event] = await self.stage.sweep()
        except Exception as exc:
            self.counters.events_failed_total += 1
            self.log.error("sweep failed: %s: %s", type(exc).__name__, exc,
                           exc_info=self.log.isEnabledFor(logging.DEBUG))
            return
        duplicates = await self._publish(events)
        kinds: dict[str, int] = {}
        for event in events:
            kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
        self.log.info("sweep published %s in %.2fs%s", summary, time.monotonic() - started,
                      f" ({duplicates} duplicates dropped)" if duplicates else "")


class ListenerRunner(_Publishing):
    """Drives a streaming producer (runtime.stage.Listener): every batch ``listen()``
    yields is published at once; a listener that fails is started again after its
    ``restart_secs``. It never holds up ``--once`` (idle() is always true)."""

    async def run(self) -> None:
        restart = float(getattr(self.stage, "restart_secs", 5.0) or 5.0)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                try:
                    await self._listen(stop)
                except Exception as exc:
                    self.counters.events_failed_total += 1
                    self.log.error("listener failed: %s: %s; listening again in %gs",
                                   type(exc).__name__, exc, restart,
                                   exc_info=self.log.isEnabledFor(logging.DEBUG))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stop), restart)
                else:
                    break
        finally:
            stop.cancel()
            self.done = True

    async def _listen(self, stop: asyncio.Future[Any]) -> None:
        """One life of the listener: until it ends, fails, or the runtime stops."""
        stream = self.stage.listen()
        published = 0
        try:
            while True:
                batch = asyncio.ensure_future(anext(stream))
                await asyncio.wait({batch, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not batch.done():
                    batch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await batch
                    return
                try:
                    events: list[Event] = batch.result()
                except StopAsyncIteration:
                    return
                if events:
                    await self._publish(events)
                    published += len(events)
        finally:
            await stream.aclose()
            self.log.info("listener stopped after %d events", published)

    async def idle(self) -> bool:
        return True
