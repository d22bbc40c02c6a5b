"""The in-process composer for one-shot commands: the pipeline without NATS.

``lanscope scan``/``discover`` run producers once and hand their events here;
this feeds them through enrichers and sinks exactly as the bus would: each
stage sees the events whose subjects match its ``consumes`` filters, enricher
outputs flow onward, sinks write in batches, and ids are filled by the same
functions the bus uses. So a one-shot command and the continuous pipeline
cannot drift apart.

    async with LocalPipeline([(spec, stage), ...]) as pipeline:
        events = await pipeline.run(produced)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lanscope.runtime.ids import fill_enricher_ids, fill_producer_ids, fill_sink_ids
from lanscope.runtime.topology import Kind, StageSpec
from schemas import Event, matches, subject_for

log = logging.getLogger(__name__)


@dataclass
class _Bound:
    spec: StageSpec
    stage: Any
    cursor: int = 0       # index into the event log: everything before it was offered to the stage
    failed: int = 0

    def wants(self, event: Event) -> bool:
        subject = subject_for(event)
        return any(matches(pattern, subject) for pattern in self.spec.consumes)


@dataclass
class LocalPipeline:
    """Enrichers and sinks composed in topology order; sinks opened on enter, closed on exit."""

    stages: Sequence[tuple[StageSpec, Any]]
    max_rounds: int = 10      # a cycle (sink -> sink) that never settles stops here
    _bound: list[_Bound] = field(default_factory=list)

    def __post_init__(self) -> None:
        for spec, stage in self.stages:
            if spec.kind is Kind.PRODUCER:
                raise ValueError(f"{spec.name}: run producers yourself and pass their events to run()")
            self._bound.append(_Bound(spec, stage))

    async def __aenter__(self) -> LocalPipeline:
        opened: list[_Bound] = []
        try:
            for bound in self._bound:
                if bound.spec.kind is Kind.SINK:
                    await bound.stage.open()
                    opened.append(bound)
        except BaseException:
            for bound in reversed(opened):
                await bound.stage.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bound in reversed(self._bound):
            if bound.spec.kind is Kind.SINK:
                await bound.stage.close()

    def failures(self) -> dict[str, int]:
        return {b.spec.name: b.failed for b in self._bound if b.failed}

    async def run(self, produced: Sequence[Event]) -> list[Event]:
        """Feed ``produced`` through every stage until nothing new comes out; returns all events."""
        events = list(produced)
        fill_producer_ids(events)
        for _ in range(self.max_rounds):
            progressed = False
            for bound in self._bound:
                todo = [e for e in events[bound.cursor:] if bound.wants(e)]
                bound.cursor = len(events)
                if not todo:
                    continue
                progressed = True
                if bound.spec.kind is Kind.ENRICHER:
                    events += await self._enrich(bound, todo)
                else:
                    events += await self._sink(bound, todo)
            if not progressed:
                return events
        log.warning("local pipeline still producing after %d rounds; stopping", self.max_rounds)
        return events

    async def _enrich(self, bound: _Bound, todo: list[Event]) -> list[Event]:
        slots = asyncio.Semaphore(max(bound.spec.concurrency, 1))

        async def one(event: Event) -> list[Event]:
            async with slots:
                try:
                    outputs: list[Event] = await bound.stage.handle(event)
                except Exception as exc:
                    # One-shot: no redelivery to wait for; report and go on with the rest.
                    bound.failed += 1
                    log.warning("%s failed on %s: %s: %s", bound.spec.name, event.host_key,
                                type(exc).__name__, exc, extra={"stage": bound.spec.name})
                    return []
            fill_enricher_ids(outputs, event.id, bound.spec.name, event.site)
            return outputs

        results = await asyncio.gather(*(one(event) for event in todo))
        return [output for outputs in results for output in outputs]

    async def _sink(self, bound: _Bound, todo: list[Event]) -> list[Event]:
        out: list[Event] = []
        size = max(bound.spec.batch_size, 1)
        for start in range(0, len(todo), size):
            outputs: list[Event] = await bound.stage.write(todo[start:start + size])
            fill_sink_ids(outputs, bound.spec.name)
            out += outputs
        return out
