"""Enrichers and sinks on their durable consumers: one consumption path for both.

Every consuming stage receives through a ``FeedRunner``: a Puller on one
durable consumer (the stage's own, or one shared by the sinks of a process,
topology.sink_feeds), each message decoded once (an undecodable one
dead-lettered for every stage that reads its subject), then handed to the
feed's dispatcher; settling (acks in one write, nak with backoff, the DLQ) is
lanscope.runtime.delivery's for both. The dispatchers differ because the
stage contracts do:

- an enricher's ``handle(event)`` runs per message, at most ``concurrency`` at
  once: the feed fetches only what can start now and requests nothing ahead,
  so a fetched message never waits for a slot, aging towards ack_wait without
  a heartbeat (EnricherRunner);
- a sink's ``write(batch)`` takes up to ``batch_size`` messages, filled for
  ``flush_ms``, and the next batch is requested, fetched and decoded while
  this one is written (lanscope.runtime.sinkbatches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.msg import Msg

from lanscope.runtime.bus import Bus, BusError
from lanscope.runtime.delivery import (
    UNDECODABLE,
    HoldStopped,
    RunnerOptions,
    StorageHold,
    copy_to_dlq,
    decode_event,
    deliveries,
    failed,
    first_delivery,
    hand_back,
    heartbeat,
    one_line,
)
from lanscope.runtime.ids import fill_enricher_ids, fill_sink_ids
from lanscope.runtime.puller import Puller
from lanscope.runtime.stagerun import StageRunner
from lanscope.runtime.topology import Feed
from schemas import Event

# A message, its event, and how often it was delivered (delivery.deliveries).
Item = tuple[Msg, Event, int]


class Dispatch(Protocol):
    """What a feed hands its messages to."""

    ahead: bool                        # Puller(ahead=...)
    fill_secs: float                   # how long a fetch waits for a batch to fill

    async def room(self) -> int:
        """How many messages to fetch now (waits for room); 0: stop fetching."""
        ...

    def unused(self, count: int) -> None: ...

    def readers(self, subject: str) -> list[ConsumerRunner]: ...

    async def take(self, items: list[Item]) -> None: ...

    def busy(self) -> bool: ...

    async def drain(self) -> None:
        """After the last fetch: let the work taken finish (a stop's grace period)."""
        ...

    async def abandon(self) -> None:
        """Cancel the work taken (its messages are handed back)."""
        ...


class FeedRunner:
    """Pulls one durable consumer and hands its decoded messages to a dispatcher."""

    def __init__(self, feed: Feed, dispatch: Dispatch, bus: Bus, options: RunnerOptions,
                 stopping: asyncio.Event) -> None:
        self.feed = feed
        self.dispatch = dispatch
        self.bus = bus
        self.options = options
        self.stopping = stopping
        self.task: asyncio.Task[None] | None = None
        self._first = first_delivery(feed.stream, feed.spec.durable)

    async def run(self) -> None:
        spec = self.feed.spec
        puller = Puller(self.bus, self.feed.stream, spec.durable, prefetch=spec.batch_size,
                        expires_secs=self.options.fetch_timeout_secs, ahead=self.dispatch.ahead)
        await puller.start()
        try:
            await self._consume(puller)
        except BaseException:
            await self.dispatch.abandon()
            raise
        finally:
            # End the open pull requests first, so nothing handed back is captured by this
            # stopping process instead of another copy; nak what arrived untaken.
            with contextlib.suppress(Exception):
                await hand_back(await puller.close())
        await self.dispatch.drain()

    async def _consume(self, puller: Puller) -> None:
        dispatch = self.dispatch
        while not self.stopping.is_set():
            room = await dispatch.room()
            if room <= 0:
                break
            msgs: list[Msg] = []
            items: list[Item] = []
            try:
                if not self.stopping.is_set():
                    msgs = await puller.fetch(room, self.options.fetch_timeout_secs,
                                              fill_secs=dispatch.fill_secs)
                    items = await self._decode(msgs)
            finally:
                dispatch.unused(room - len(items))
            if items:
                await dispatch.take(items)
            elif not msgs and self.bus.nc.is_closed:
                raise BusError(f"feed {self.feed.stream}/{self.feed.spec.durable}: NATS connection closed")

    async def _decode(self, msgs: list[Msg]) -> list[Item]:
        items: list[Item] = []
        first, max_deliver = self._first, self.options.max_deliver
        for msg in msgs:
            delivered = deliveries(msg, first)
            event = decode_event(msg, delivered, max_deliver)
            if isinstance(event, str):
                # Undecodable: the same for every stage that reads it, so dead-lettered once.
                once = event.startswith(UNDECODABLE)
                for reader in self.dispatch.readers(msg.subject):
                    await reader.to_dlq(msg, event, once=once)
                await msg.term()
            else:
                items.append((msg, event, delivered))
        return items

    async def idle(self) -> bool:
        if self.dispatch.busy():
            return False
        info = await self.bus.js.consumer_info(self.feed.stream, self.feed.spec.durable)
        return (info.num_pending or 0) + (info.num_ack_pending or 0) == 0


class ConsumerRunner(StageRunner):
    """An enricher or a sink: its messages come from feeds (FeedRunner), one per stream it
    reads; a feed that fails (the bus is gone) stops the whole process, to be restarted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.feeds: list[FeedRunner] = []
        self.hold = StorageHold(self.log, self.stopping)   # a full disk: hold, retry, resume

    async def to_dlq(self, msg: Msg, reason: str, *, once: bool = False) -> None:
        """Copy ``msg`` to this stage's dead-letter subject (the caller terminates it);
        ``once``: one copy for every stage (delivery.copy_to_dlq)."""
        self.counters.events_failed_total += 1
        self.log.warning("dead-lettering %s seq %d: %s", msg.subject, msg.metadata.sequence.stream,
                         one_line(reason))
        await copy_to_dlq(self.bus, self.spec.name, msg, reason, once=once)

    async def run(self) -> None:
        tasks = [feed.task for feed in self.feeds if feed.task is not None]
        try:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks))
        finally:
            if not self.stopping.is_set() and any(t.done() and not t.cancelled() and t.exception()
                                                  for t in tasks):
                self.log.error("a feed of this stage failed; stopping")
                self.stopping.set()
            if tasks:   # the feeds end once stopping (or cancelled by the runner's grace period)
                await asyncio.wait(tasks)
            await self.stop_serving()
            await self.finish()
            self.done = True

    async def idle(self) -> bool:
        return all([await feed.idle() for feed in self.feeds])


class EnricherRunner(ConsumerRunner):
    """An enricher and its feeds' dispatcher: ``handle()`` per message, ``concurrency`` at
    once (slots shared by its feeds), acked once its outputs are published."""

    ahead = False
    fill_secs = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(self.spec.concurrency, 1))

    async def room(self) -> int:
        # Fetch only what can start now: a slot for each, up to a batch; nothing while a
        # write waits for storage.
        await self.hold.resumed_or_stopping()
        if not await self._acquire_or_stop():
            return 0
        free = 1
        while free < self.spec.batch_size and not self._slots.locked():
            await self._slots.acquire()
            free += 1
        return free

    async def _acquire_or_stop(self) -> bool:
        """A handler slot, or False once a stop is requested (no fetch without a slot)."""
        acquire = asyncio.ensure_future(self._slots.acquire())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({acquire, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not self.stopping.is_set():
            return True
        if acquire.done() and not acquire.cancelled():
            self._slots.release()
        acquire.cancel()
        return False

    def unused(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def readers(self, subject: str) -> list[ConsumerRunner]:
        return [self]

    async def take(self, items: list[Item]) -> None:
        for msg, event, _ in items:
            task = asyncio.create_task(self._handle(msg, event))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def busy(self) -> bool:
        return bool(self._inflight)

    async def _handle(self, msg: Msg, event: Event) -> None:
        """One message, holding one slot."""
        try:
            self.counters.events_received_total += 1
            try:
                async with heartbeat([msg], self.ack_wait):
                    outputs = await self._outputs(msg, event)
            except (asyncio.CancelledError, HoldStopped):
                await hand_back([msg])
                return
            except Exception as exc:
                await failed(msg, [(self, exc)], self.options)
                return
            await self.bus.nc.ack_all([msg])
            self.counters.events_emitted_total += len(outputs)
        except asyncio.CancelledError:
            await hand_back([msg])
            raise
        except Exception as exc:  # the bus itself failed (closed): the server redelivers later
            self.log.error("cannot settle %s: %s: %s", msg.subject, type(exc).__name__, exc)
        finally:
            self._slots.release()

    async def _outputs(self, msg: Msg, event: Event) -> list[Event]:
        """Handle ``event`` and publish its outputs; a failure for want of storage is retried
        until storage is back (HoldStopped on a stop)."""
        async def attempt() -> list[Event]:
            outputs: list[Event] = await self.stage.handle(event)
            fill_enricher_ids(outputs, event.id, self.spec.name, event.site)
            await self.bus.publish_events(outputs)
            return outputs

        try:
            return await attempt()
        except Exception as exc:
            return await self.hold.recover(exc, attempt, f"{msg.subject} seq {msg.metadata.sequence.stream}")

    async def drain(self) -> None:
        if not self._inflight:
            return
        self.log.info("waiting up to %gs for %d in-flight events", self.options.grace_secs,
                      len(self._inflight))
        _, pending = await asyncio.wait(set(self._inflight), timeout=self.options.grace_secs)
        for task in pending:
            task.cancel()
        if pending:
            self.log.warning("handed back %d unfinished events", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    async def abandon(self) -> None:
        for task in self._inflight:
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)


class SinkRunner(ConsumerRunner):
    """One sink: its batches go through stage.write() one at a time, and its outputs go out
    in batch order (a batch publishes once the previous batch's publish is over, however
    it ended; later batches write meanwhile). Its feeds are its own or shared with the
    other sinks of this process (SinkBatches)."""

    def __init__(self, *args: Any, flush_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_secs = (flush_ms if flush_ms is not None else self.options.sink_flush_ms) / 1000.0
        self._write_lock = asyncio.Lock()  # a sink with two feeds still writes one batch at a time
        self._published: asyncio.Future[None] | None = None   # the last batch's publish turn

    async def start(self) -> None:
        await self.stage.open()
        await super().start()

    async def finish(self) -> None:
        with contextlib.suppress(Exception):
            await self.stage.close()

    async def commit(self, items: list[Item], locked: Callable[[], None] | None = None) -> None:
        """Write ``items``, then publish the outputs in batch order; raises what either raised.
        ``locked`` is called once this batch has the write lock."""
        # Only a message delivered before can have been committed before.
        redelivered = {event.id for _, event, delivered in items if delivered > 1}
        async with self._write_lock:
            if locked is not None:
                locked()
            started = time.perf_counter()
            outputs: list[Event] = await self.stage.write([event for _, event, _ in items], redelivered)
            done_at = time.perf_counter()
            fill_sink_ids(outputs, self.spec.name)
            # Outputs go out in batch order: after the previous batch's, however that
            # ended; the next batch may write meanwhile.
            before = self._published
            turn = self._published = asyncio.get_running_loop().create_future()
        try:
            if before is not None:
                await asyncio.shield(before)
            await self.bus.publish_events(outputs)
        finally:
            turn.set_result(None)
        self.counters.events_emitted_total += len(outputs)
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("batch of %d: write %.1f ms, %d outputs published in %.1f ms",
                           len(items), (done_at - started) * 1e3, len(outputs),
                           (time.perf_counter() - done_at) * 1e3)
