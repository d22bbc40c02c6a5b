"""Binds stages to the bus: producers on a schedule, enrichers and sinks on their consumers.

The delivery contract, in one place:

- a message is acked only after its handler (or the sink's write) returned and
  every output got its PubAck; outputs carry deterministic ids, so a
  redelivered input re-publishes the same ids and the stream drops them;
- an undecodable message, or one that failed on its last allowed delivery, is
  copied to ``lanscope.dlq.<stage>`` with the reason in headers and terminated;
- a failing handler is nak'd with exponential backoff; slow work sends
  ``in_progress()`` so the server does not hand it to another copy;
- on SIGTERM/SIGINT fetching stops, in-flight work gets a grace period, and
  whatever is unfinished is nak'd so another copy takes it;
- while NATS is unreachable, fetches and publishes are retried; nothing that
  was not processed and published is acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from lanscope.config import NatsConfig
from lanscope.runtime.bus import MSG_ID, Bus, Feed, Puller, consumer_bindings, sink_feeds
from lanscope.runtime.ids import fill_enricher_ids, fill_producer_ids, fill_sink_ids, payload_id
from lanscope.runtime.topology import Kind, StageSpec
from schemas import Event, decode, dlq_subject
from schemas import subjects as subj

log = logging.getLogger(__name__)

QUERY_QUEUE = "lanscope-query"
H_REASON = "Lanscope-Dlq-Reason"
H_SUBJECT = "Lanscope-Original-Subject"
H_STREAM = "Lanscope-Original-Stream"
H_SEQ = "Lanscope-Stream-Seq"
H_DELIVERIES = "Lanscope-Deliveries"
H_STAGE = "Lanscope-Stage"
H_QUERY_ERROR = "Lanscope-Error"
_MAX_REASON = 512


@dataclass(frozen=True)
class RunnerOptions:
    max_deliver: int = 5                 # handler attempts before the DLQ
    ack_wait_secs: float = 30.0          # when the spec has none
    backoff_secs: float = 1.0            # first nak delay; doubles per delivery
    backoff_max_secs: float = 60.0
    grace_secs: float = 10.0             # in-flight work may finish this long after SIGTERM
    fetch_timeout_secs: float = 1.0      # bounds how fast fetch loops notice a stop
    stats_every_secs: float = 60.0
    sink_flush_ms: int = 200
    once: bool = False                   # producers sweep once; stop when every consumer is idle

    @classmethod
    def from_config(cls, n: NatsConfig, *, once: bool = False) -> RunnerOptions:
        return cls(max_deliver=n.max_deliver, ack_wait_secs=n.ack_wait_secs,
                   backoff_secs=n.nak_backoff_ms / 1000.0, backoff_max_secs=n.nak_backoff_max_secs,
                   grace_secs=n.shutdown_grace_secs, once=once)


@dataclass
class Counters:
    events_received_total: int = 0
    events_emitted_total: int = 0
    events_failed_total: int = 0

    def line(self) -> str:
        return (f"events_received_total={self.events_received_total} "
                f"events_emitted_total={self.events_emitted_total} "
                f"events_failed_total={self.events_failed_total}")


class _StageLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "stage": self.extra["stage"]}  # type: ignore[index]
        return msg, kwargs


def _one_line(text: str) -> str:
    return " ".join(text.split())[:_MAX_REASON]


# A sink's message, its event, and how often it was delivered (_deliveries).
_Item = tuple[Msg, Event, int]


def _deliveries(msg: Msg, first: str = "") -> int:
    """How often this message was delivered, read from its ack subject alone.

    ``msg.metadata`` parses every field (timestamps included) for each message;
    the count is token 4 of ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...``
    (token 6 in the form with domain and account hash). ``first``: the ack subject's
    start for a first delivery from a known consumer (_first_delivery), the usual
    case, told in ~0.1 us instead of ~0.4 for the split."""
    reply = msg.reply or ""
    if first and reply.startswith(first):
        return 1
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[4].isdigit():
        return int(tokens[4])
    if len(tokens) >= 12 and tokens[6].isdigit():
        return int(tokens[6])
    return msg.metadata.num_delivered


def _first_delivery(stream: str, durable: str) -> str:
    """How the ack subject of a message delivered the first time by this consumer starts."""
    return f"$JS.ACK.{stream}.{durable}.1."


def _decode(msg: Msg, deliveries: int, max_deliver: int) -> Event | str:
    """The event, or the reason it cannot be handled (``deliveries``: _deliveries(msg))."""
    try:
        event: Event = decode(msg.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return f"undecodable: {exc}"
    if deliveries > max_deliver:
        return f"not acknowledged after {max_deliver} deliveries (handler timed out or its process died)"
    if not event.id:
        # Published by another tool without an id: derive one, so our outputs stay stable.
        event.id = (msg.headers or {}).get(MSG_ID) or payload_id(msg.subject, msg.data)
    return event


async def _failed(msg: Msg, failures: Sequence[tuple[_ConsumerRunner, BaseException]],
                  options: RunnerOptions) -> None:
    """``msg`` failed in the stages named (a feed shared by sinks: in one or more of them):
    nak it with a backoff, or after the last allowed delivery dead-letter it for each."""
    delivered = msg.metadata.num_delivered
    for stage, _ in failures:
        stage.counters.events_failed_total += 1
    if delivered >= options.max_deliver:
        for stage, exc in failures:
            await stage._to_dlq(msg, f"failed {delivered} times, last: {type(exc).__name__}: {exc}")
        await msg.term()
        return
    delay = float(min(options.backoff_secs * 2 ** max(delivered - 1, 0), options.backoff_max_secs))
    for stage, exc in failures:
        stage.log.warning("%s seq %d failed (delivery %d/%d), retry in %.1fs: %s", msg.subject,
                          msg.metadata.sequence.stream, delivered, options.max_deliver, delay,
                          _one_line(f"{type(exc).__name__}: {exc}"))
    await msg.nak(delay=delay)


@contextlib.asynccontextmanager
async def _heartbeat(msgs: Sequence[Msg], ack_wait: float) -> AsyncIterator[None]:
    """Tell the server every ack_wait/3 that slow work on ``msgs`` is still going."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(ack_wait / 3)
            for msg in msgs:
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _hand_back(msgs: Sequence[Msg]) -> None:
    for msg in msgs:
        with contextlib.suppress(Exception):
            await msg.nak()


def _ack_wait(spec: StageSpec, options: RunnerOptions) -> float:
    return spec.ack_wait_secs or options.ack_wait_secs


async def _pending(bus: Bus, stream: str, durable: str) -> int:
    info = await bus.js.consumer_info(stream, durable)
    return (info.num_pending or 0) + (info.num_ack_pending or 0)


class _StageRunner:
    """What every kind of stage shares: counters, logging, the stop signal."""

    def __init__(self, spec: StageSpec, stage: Any, bus: Bus, options: RunnerOptions,
                 stopping: asyncio.Event) -> None:
        self.spec = spec
        self.stage = stage
        self.bus = bus
        self.options = options
        self.stopping = stopping
        self.counters = Counters()
        self.log = _StageLog(log, {"stage": spec.name})
        self.done = False             # finished its work (--once) or stopped
        self._query_sub: Subscription | None = None

    @property
    def ack_wait(self) -> float:
        return _ack_wait(self.spec, self.options)

    async def start(self) -> None:
        query = getattr(self.stage, "query", None)
        if callable(query):
            self._query_sub = await self.bus.nc.subscribe(subj.QUERY, queue=QUERY_QUEUE,
                                                          cb=self._serve_query)
            self.log.info("answering queries on %s", subj.QUERY)

    async def _serve_query(self, msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            reply: bytes = await self.stage.query(msg.data)
            await self.bus.nc.publish(msg.reply, reply)
        except Exception as exc:
            await self.bus.nc.publish(msg.reply, b"",
                                      headers={H_QUERY_ERROR: _one_line(f"{type(exc).__name__}: {exc}")})

    async def stop_serving(self) -> None:
        if self._query_sub is not None:
            with contextlib.suppress(Exception):
                await self._query_sub.unsubscribe()
            self._query_sub = None

    async def run(self) -> None:
        raise NotImplementedError

    async def idle(self) -> bool:
        """True when this stage has nothing left to do (for --once)."""
        return self.done


# -------------------------------------------------------------------------- producers


class ProducerRunner(_StageRunner):
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
        fill_producer_ids(events)
        acks = await self.bus.publish_events(events)
        duplicates = sum(bool(ack.duplicate) for ack in acks)
        self.counters.events_emitted_total += len(events)
        kinds: dict[str, int] = {}
        for event in events:
            kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "nothing"
        self.log.info("sweep published %s in %.2fs%s", summary, time.monotonic() - started,
                      f" ({duplicates} duplicates dropped)" if duplicates else "")


# -------------------------------------------------------------------------- consumers


class _ConsumerRunner(_StageRunner):
    """Pull-fetch from the stage's durable consumer(s); DLQ and heartbeat helpers."""

    async def _bind(self) -> list[tuple[str, Any]]:
        self._subs = []
        for stream in consumer_bindings(self.spec):
            psub = await self.bus.js.pull_subscribe_bind(durable=self.spec.durable, stream=stream)
            self._subs.append((stream, psub))
        return self._subs

    async def _unbind(self) -> None:
        """Unsubscribe once the fetch loops have ended, handing back late arrivals.

        Called before in-flight work is handed back: the loops' last pull requests
        have expired by then, so nothing nak'd later is captured by this stopping
        process instead of another copy. A message that reached the client after
        its fetch gave up waits in the subscription's queue: nak it now rather than
        let it sit until ack_wait."""
        subs, self._subs = getattr(self, "_subs", []), []
        for _, psub in subs:
            queue = getattr(getattr(psub, "_sub", None), "_pending_queue", None)
            late: list[Msg] = []
            while queue is not None and not queue.empty():
                msg = queue.get_nowait()
                if msg.reply and not (msg.headers or {}).get("Status"):
                    late.append(msg)
            await _hand_back(late)
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _fetch(self, psub: Any, batch: int, timeout: float) -> list[Msg]:
        """Fetch up to ``batch`` messages; [] on timeout or while NATS is away."""
        try:
            msgs: list[Msg] = await psub.fetch(batch, timeout=max(timeout, 0.01))
            return msgs
        except nats.errors.TimeoutError:
            return []
        except (nats.errors.Error, OSError) as exc:
            if self.bus.nc.is_closed:
                raise
            self.log.debug("fetch failed (%s); retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)
            return []

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        await self._to_dlq(msg, reason)
        await msg.term()

    async def _to_dlq(self, msg: Msg, reason: str) -> None:
        """Copy ``msg`` to this stage's dead-letter subject (the caller terminates it)."""
        md = msg.metadata
        headers = {
            H_REASON: _one_line(reason),
            H_SUBJECT: msg.subject,
            H_STREAM: md.stream,
            H_SEQ: str(md.sequence.stream),
            H_DELIVERIES: str(md.num_delivered),
            H_STAGE: self.spec.name,
        }
        self.counters.events_failed_total += 1
        self.log.warning("dead-lettering %s seq %d: %s", msg.subject, md.sequence.stream, headers[H_REASON])
        await self.bus.publish_bytes(dlq_subject(self.spec.name), msg.data, headers=headers,
                                     msg_id=f"dlq-{self.spec.name}-{md.stream}-{md.sequence.stream}")

    async def _pending(self) -> int:
        total = 0
        for stream in consumer_bindings(self.spec):
            total += await _pending(self.bus, stream, self.spec.durable)
        return total


class EnricherRunner(_ConsumerRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max(self.spec.concurrency, 1))

    async def run(self) -> None:
        subs = await self._bind()
        try:
            await asyncio.gather(*(self._consume(psub) for _, psub in subs))
        except asyncio.CancelledError:
            # The runner's grace period is over: hand back whatever is still running.
            await self._unbind()
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            raise
        else:
            await self._unbind()
            await self._finish_inflight()
        finally:
            self.done = True

    async def _consume(self, psub: Any) -> None:
        while not self.stopping.is_set():
            # Fetch only what can start now: a fetched message waiting for a slot would
            # age towards ack_wait without a heartbeat.
            if not await self._acquire_or_stop():
                break
            free = 1
            while free < self.spec.batch_size and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            msgs: list[Msg] = []
            try:
                if not self.stopping.is_set():
                    msgs = await self._fetch(psub, free, self.options.fetch_timeout_secs)
            finally:
                for _ in range(free - len(msgs)):
                    self._slots.release()
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

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

    async def _handle(self, msg: Msg) -> None:
        try:
            event = _decode(msg, _deliveries(msg), self.options.max_deliver)
            if isinstance(event, str):
                await self._dead_letter(msg, event)
                return
            self.counters.events_received_total += 1
            try:
                async with _heartbeat([msg], self.ack_wait):
                    outputs: list[Event] = await self.stage.handle(event)
                fill_enricher_ids(outputs, event.id, self.spec.name)
                await self.bus.publish_events(outputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await _failed(msg, [(self, exc)], self.options)
                return
            await msg.ack()
            self.counters.events_emitted_total += len(outputs)
        except asyncio.CancelledError:
            await _hand_back([msg])
            raise
        except Exception as exc:  # the bus itself failed (closed): the server redelivers later
            self.log.error("cannot settle %s: %s: %s", msg.subject, type(exc).__name__, exc)
        finally:
            self._slots.release()

    async def _finish_inflight(self) -> None:
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

    async def idle(self) -> bool:
        return not self._inflight and await self._pending() == 0


class SinkRunner(_ConsumerRunner):
    """One sink: its batches go through stage.write() one at a time, and its outputs go out
    in batch order (a batch publishes once the previous batch's publish is over, however
    it ended; later batches write meanwhile). Its messages come from feeds (_FeedRunner):
    one per stream it reads, its own or shared with the other sinks of this process."""

    def __init__(self, *args: Any, flush_ms: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_secs = (flush_ms if flush_ms is not None else self.options.sink_flush_ms) / 1000.0
        self._write_lock = asyncio.Lock()  # a sink with two feeds still writes one batch at a time
        self._published: asyncio.Future[None] | None = None   # the last batch's publish turn
        self.feeds: list[_FeedRunner] = []

    async def start(self) -> None:
        await self.stage.open()
        await super().start()

    async def run(self) -> None:
        tasks = [feed.task for feed in self.feeds if feed.task is not None]
        try:
            await asyncio.gather(*(asyncio.shield(t) for t in tasks))
        finally:
            if not self.stopping.is_set() and any(t.done() and not t.cancelled() and t.exception()
                                                  for t in tasks):
                # An input is gone (the bus failed): the whole process stops and is restarted.
                self.log.error("a feed of this sink failed; stopping")
                self.stopping.set()
            if tasks:   # the feeds end once stopping (or cancelled by the runner's grace period)
                await asyncio.wait(tasks)
            await self.stop_serving()
            with contextlib.suppress(Exception):
                await self.stage.close()
            self.done = True

    async def commit(self, items: list[_Item], locked: Callable[[], None] | None = None) -> None:
        """Write ``items``, then publish the outputs in batch order; raises what either raised.
        ``locked`` is called once this batch has the write lock."""
        # Only a message delivered before can have been committed before.
        redelivered = {event.id for _, event, deliveries in items if deliveries > 1}
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

    async def idle(self) -> bool:
        return all([await feed.idle() for feed in self.feeds])


class _FeedRunner:
    """Pulls one durable consumer (a bus.Feed) and hands each batch to the sinks it feeds.

    Each message is decoded once and given to the sinks whose filters match its
    subject; they write at the same time (one sink's commit overlaps another's
    Python work) and the message is acked once every one of them committed it. The
    next batch is fetched and decoded while this one is written. A message that
    failed in a sink is nak'd, so every sink sees it again (a redelivery, harmless
    to the ones that committed it) or, after its last delivery, dead-lettered for
    each sink it failed in."""

    def __init__(self, feed: Feed, members: list[SinkRunner], bus: Bus, options: RunnerOptions,
                 stopping: asyncio.Event) -> None:
        self.feed = feed
        self.members = members
        self.bus = bus
        self.options = options
        self.stopping = stopping
        self.flush_secs = min(m.flush_secs for m in members)
        self.ack_wait = _ack_wait(feed.spec, options)
        self.task: asyncio.Task[None] | None = None
        self._filters = [(m, consumer_bindings(m.spec)[feed.stream]) for m in members]
        self._routes: dict[str, list[SinkRunner]] = {}
        self._first = _first_delivery(feed.stream, feed.spec.durable)
        self._busy = 0

    def _route(self, subject: str) -> list[SinkRunner]:
        """The sinks that read ``subject`` (few distinct subjects: remembered)."""
        route = self._routes.get(subject)
        if route is None:
            route = self._routes[subject] = [m for m, filters in self._filters
                                             if any(subj.matches(f, subject) for f in filters)]
        return route

    async def run(self) -> None:
        spec = self.feed.spec
        # One batch may wait in the client while the previous one is written:
        # the write of batch n overlaps the delivery of batch n+1.
        puller = Puller(self.bus, self.feed.stream, spec.durable, prefetch=spec.batch_size,
                        expires_secs=self.options.fetch_timeout_secs)
        await puller.start()
        try:
            await self._consume(puller)
        finally:
            # After the fetch loop: end the open pull requests, nak what arrived untaken.
            with contextlib.suppress(Exception):
                await _hand_back(await puller.close())

    async def _consume(self, puller: Puller) -> None:
        batches: set[asyncio.Task[None]] = set()
        try:
            while not self.stopping.is_set():
                # Up to a batch: the first message within fetch_timeout, then flush_ms to fill up.
                msgs = await puller.fetch(self.feed.spec.batch_size, self.options.fetch_timeout_secs,
                                          fill_secs=self.flush_secs)
                for task in [t for t in batches if t.done()]:
                    batches.discard(task)
                    task.result()            # a bus failure stops the feed
                if not msgs:
                    continue
                # A stop lets started batches finish; the runner cancels them (and so naks
                # them) only when the grace period is over.
                # Fetch (and decode) the next batch once this one is being written: decoding
                # overlaps the commit, which runs in the sink's thread.
                writing = asyncio.Event()
                batches.add(asyncio.create_task(self._process(msgs, writing)))
                await writing.wait()
            if batches:
                await asyncio.gather(*batches)
        except asyncio.CancelledError:
            for task in batches:
                task.cancel()
            await asyncio.gather(*batches, return_exceptions=True)
            raise

    async def _process(self, msgs: list[Msg], writing: asyncio.Event) -> None:
        self._busy += 1
        try:
            items: list[_Item] = []
            first = self._first
            for msg in msgs:
                deliveries = _deliveries(msg, first)
                event = _decode(msg, deliveries, self.options.max_deliver)
                if isinstance(event, str):
                    for member in self._route(msg.subject) or self.members:
                        await member._to_dlq(msg, event)
                    await msg.term()
                else:
                    items.append((msg, event, deliveries))
            if items:
                await self._write(items, writing)
        finally:
            self._busy -= 1
            writing.set()

    async def _write(self, items: list[_Item], writing: asyncio.Event) -> None:
        msgs = [msg for msg, _, _ in items]
        if len(self.members) == 1:
            shares = [(self.members[0], items)]
        else:
            by_member: dict[SinkRunner, list[_Item]] = {member: [] for member in self.members}
            for item in items:
                for member in self._route(item[0].subject):
                    by_member[member].append(item)
            shares = [(member, share) for member, share in by_member.items() if share]
        for member, share in shares:
            member.counters.events_received_total += len(share)
        waiting = len(shares)

        def locked() -> None:   # the next batch is fetched once every sink writes this one
            nonlocal waiting
            waiting -= 1
            if waiting <= 0:
                writing.set()

        failures: dict[int, list[tuple[_ConsumerRunner, BaseException]]] = {}
        try:
            async with _heartbeat(msgs, self.ack_wait):
                results = await asyncio.gather(*(member.commit(share, locked) for member, share in shares),
                                               return_exceptions=True)
                for (member, share), result in zip(shares, results, strict=True):
                    if result is None:
                        continue
                    if not isinstance(result, Exception):
                        raise result
                    if len(share) > 1 and any(deliveries > 1 for _, _, deliveries in share):
                        # The batch failed before: write one by one so a poison message cannot
                        # hold back (or drag into the DLQ) the good ones that share its batch.
                        member.log.warning("batch of %d failed again (%s); isolating", len(share),
                                           type(result).__name__)
                        for item in share:
                            try:
                                await member.commit([item])
                            except Exception as exc:
                                failures.setdefault(id(item[0]), []).append((member, exc))
                    else:
                        for item in share:
                            failures.setdefault(id(item[0]), []).append((member, result))
        except asyncio.CancelledError:
            await _hand_back(msgs)
            raise
        done = [msg for msg in msgs if id(msg) not in failures]
        if done:
            await self.bus.nc.ack_all(done)
        for msg in msgs:
            if id(msg) in failures:
                await _failed(msg, failures[id(msg)], self.options)

    async def idle(self) -> bool:
        return self._busy == 0 and await _pending(self.bus, self.feed.stream, self.feed.spec.durable) == 0


# -------------------------------------------------------------------------- the runner


@dataclass
class _Entry:
    spec: StageSpec
    runner: _StageRunner
    task: asyncio.Task[None] | None = None


@dataclass
class Runner:
    """Runs stages until stop(): ``runner.add(spec, stage)``, then ``await runner.run()``."""

    bus: Bus
    options: RunnerOptions = field(default_factory=RunnerOptions)
    on_stopped: Callable[[], Awaitable[None]] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _entries: list[_Entry] = field(default_factory=list)

    def add(self, spec: StageSpec, stage: Any, *, flush_ms: int | None = None) -> _StageRunner:
        runner: _StageRunner
        args = (spec, stage, self.bus, self.options, self.stopping)
        if spec.kind is Kind.PRODUCER:
            runner = ProducerRunner(*args)
        elif spec.kind is Kind.ENRICHER:
            runner = EnricherRunner(*args)
        else:
            runner = SinkRunner(*args, flush_ms=flush_ms)
        self._entries.append(_Entry(spec, runner))
        return runner

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: no new fetches; in-flight work has %gs", self.options.grace_secs)
            self.stopping.set()

    def counters(self) -> dict[str, Counters]:
        return {e.spec.name: e.runner.counters for e in self._entries}

    async def run(self) -> None:
        feeds = self._feeds()
        for entry in self._entries:
            await entry.runner.start()
        for feed in feeds:
            feed.task = asyncio.create_task(feed.run(), name=f"feed:{feed.feed.stream}/{feed.feed.spec.name}")
        for entry in self._entries:
            entry.task = asyncio.create_task(entry.runner.run(), name=f"stage:{entry.spec.name}")
        helpers = [asyncio.create_task(self._report())]
        if self.options.once:
            helpers.append(asyncio.create_task(self._stop_when_idle()))
        stages = [e.task for e in self._entries if e.task is not None]
        stages += [f.task for f in feeds if f.task is not None]
        everything = asyncio.gather(*stages, return_exceptions=True)
        stop_requested = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([everything, stop_requested],  # type: ignore[type-var]
                               return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                _, late = await asyncio.wait(stages, timeout=self.options.grace_secs + 1.0)
                for task in late:
                    task.cancel()
            results = await everything
            for entry, result in zip(self._entries, results[:len(self._entries)], strict=True):
                if isinstance(result, asyncio.CancelledError):
                    entry.runner.log.warning("stage did not finish within the grace period")
                elif isinstance(result, BaseException):
                    entry.runner.log.error("stage stopped: %s: %s", type(result).__name__, result,
                                           exc_info=result)
        finally:
            stop_requested.cancel()
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            for entry in self._entries:
                await entry.runner.stop_serving()
                entry.runner.log.info("final counters: %s", entry.runner.counters.line())

    def _feeds(self) -> list[_FeedRunner]:
        """One feed per stream the sinks read; sinks that share a stream share its feed (its
        consumer is provisioned by the caller, as every other: bus.provision(feeds=...))."""
        sinks = {e.spec.name: e.runner for e in self._entries if isinstance(e.runner, SinkRunner)}
        feeds: list[_FeedRunner] = []
        for plan in sink_feeds(runner.spec for runner in sinks.values()):
            if plan.shared:
                log.info("sinks %s read %s through one consumer, %s", ", ".join(plan.members),
                         plan.stream, plan.spec.durable)
            members = [sinks[name] for name in plan.members]
            feed = _FeedRunner(plan, members, self.bus, self.options, self.stopping)
            for member in members:
                member.feeds.append(feed)
            feeds.append(feed)
        return feeds

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.options.stats_every_secs)
            for entry in self._entries:
                entry.runner.log.info("%s", entry.runner.counters.line())

    async def _stop_when_idle(self) -> None:
        """--once: stop after every producer swept and every consumer is idle twice in a row."""
        quiet = 0
        while not self.stopping.is_set():
            await asyncio.sleep(0.3)
            try:
                idle = all([await e.runner.idle() for e in self._entries])
            except Exception:
                idle = False
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                self.stop()
