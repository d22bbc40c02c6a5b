"""A sink feed's dispatcher (``SinkBatches``): batches for the sinks of one feed.

lanscope.runtime.consume runs the feed (a Puller, decoding, settling); this module
decides what each sink writes, when the next batch is fetched, and what a failed
batch turns into (a retry one by one, a DLQ entry per unusable event).
"""

from __future__ import annotations

import asyncio
import functools

from lanscope.errors import UnusableEvent
from lanscope.runtime.bus import Bus
from lanscope.runtime.consume import ConsumerRunner, Item, SinkRunner
from lanscope.runtime.delivery import HoldStopped, Reader, RunnerOptions, failed, hand_back, heartbeat
from lanscope.runtime.topology import Feed, consumer_bindings
from schemas import subjects as subj


class SinkBatches:
    """A sink feed's dispatcher: batches for the sinks it feeds (one, or several sharing it).

    Each message is given to the sinks whose filters match its subject; they write
    at the same time (one sink's commit overlaps another's Python work) and the
    message is acked once every one of them committed it. The next batch is
    fetched once every sink holds its write lock for this one. A message that
    failed in a sink is nak'd, so every sink sees it again (a redelivery, harmless
    to the ones that committed it) or, after its last delivery, dead-lettered for
    each sink it failed in."""

    ahead = True

    def __init__(self, feed: Feed, members: list[SinkRunner], bus: Bus, options: RunnerOptions) -> None:
        self.feed = feed
        self.members = members
        self.bus = bus
        self.options = options
        self.fill_secs = min(m.flush_secs for m in members)
        self.ack_wait = feed.spec.ack_wait_secs or options.ack_wait_secs
        self._filters = [(m, consumer_bindings(m.spec, bus.layout.streams)[feed.stream]) for m in members]
        self._routes: dict[str, list[SinkRunner]] = {}
        self._batches: set[asyncio.Task[None]] = set()

    def _route(self, subject: str) -> list[SinkRunner]:
        """The sinks that read ``subject`` (few distinct subjects: remembered)."""
        route = self._routes.get(subject)
        if route is None:
            route = self._routes[subject] = [m for m, filters in self._filters
                                             if any(subj.matches(f, subject) for f in filters)]
        return route

    async def room(self) -> int:
        for task in [t for t in self._batches if t.done()]:
            self._batches.discard(task)
            task.result()            # a bus failure stops the feed
        for member in self.members:  # nothing new while a sink waits for storage
            await member.hold.resumed_or_stopping()
        return self.feed.spec.batch_size

    def unused(self, count: int) -> None:
        pass

    def readers(self, subject: str) -> list[ConsumerRunner]:
        return list(self._route(subject) or self.members)

    async def take(self, items: list[Item]) -> None:
        # A stop lets started batches finish; the runner cancels them (and so naks them)
        # only when the grace period is over. The next batch is fetched (and decoded) once
        # this one is being written: decoding overlaps the commit, which runs in the
        # sink's thread.
        writing = asyncio.Event()
        self._batches.add(asyncio.create_task(self._write(items, writing)))
        await writing.wait()

    def busy(self) -> bool:
        return any(not t.done() for t in self._batches)

    async def drain(self) -> None:
        if self._batches:
            await asyncio.gather(*self._batches)

    async def abandon(self) -> None:
        for task in self._batches:
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)

    async def _write(self, items: list[Item], writing: asyncio.Event) -> None:
        try:
            await self._commit(items, writing)
        finally:
            writing.set()

    async def _commit(self, items: list[Item], writing: asyncio.Event) -> None:
        msgs = [msg for msg, _, _ in items]
        if len(self.members) == 1:
            shares = [(self.members[0], items)]
        else:
            by_member: dict[SinkRunner, list[Item]] = {member: [] for member in self.members}
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

        failures: dict[int, list[tuple[Reader, BaseException]]] = {}
        try:
            async with heartbeat(msgs, self.ack_wait):
                results = await asyncio.gather(*(member.commit(share, locked) for member, share in shares),
                                               return_exceptions=True)
                for (member, share), result in zip(shares, results, strict=True):
                    if result is None:
                        continue
                    if not isinstance(result, Exception):
                        raise result
                    try:
                        # For want of storage, no fault of the events: the same write again
                        # until storage is back. Otherwise (or failing otherwise) it is theirs.
                        await member.hold.recover(result, functools.partial(member.commit, share),
                                                  f"a batch of {len(share)}")
                        continue
                    except HoldStopped:
                        raise
                    except Exception as other:
                        result = other
                    for item, error in await _retry(member, share, result):
                        failures.setdefault(id(item[0]), []).append((member, error))
        except (asyncio.CancelledError, HoldStopped) as stopped:
            await hand_back(msgs)
            if isinstance(stopped, asyncio.CancelledError):
                raise
            return
        done = [msg for msg in msgs if id(msg) not in failures]
        if done:
            await self.bus.nc.ack_all(done)
        for msg in msgs:
            if id(msg) in failures:
                await failed(msg, failures[id(msg)], self.options)


async def _retry(member: SinkRunner, share: list[Item], error: Exception) -> list[tuple[Item, Exception]]:
    """``share`` failed in ``member`` with ``error``: write again what may succeed now; the
    items that failed in the end, each with its error."""
    if isinstance(error, UnusableEvent) and error.event_ids:
        bad = [item for item in share if item[1].id in error.event_ids]
        if bad:
            # The sink named the events it cannot use: those go to the DLQ, the rest again.
            rest = [item for item in share if item[1].id not in error.event_ids]
            failures: list[tuple[Item, Exception]] = [(item, error) for item in bad]
            try:
                if rest:
                    await member.commit(rest)
            except Exception as exc:
                failures += [(item, exc) for item in rest]
            return failures
    if len(share) > 1 and any(delivered > 1 for _, _, delivered in share):
        # The batch failed before: write one by one so a poison message cannot hold back
        # (or drag into the DLQ) the good ones that share its batch.
        member.log.warning("batch of %d failed again (%s); isolating", len(share), type(error).__name__)
        failures = []
        for item in share:
            try:
                await member.commit([item])
            except Exception as exc:
                failures.append((item, exc))
        return failures
    return [(item, error) for item in share]
