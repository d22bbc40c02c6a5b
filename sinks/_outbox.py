"""The outbox both state-file sinks (findings, registry) use for redelivery.

The runtime acks a batch only after the sink's outputs got their PubAck; a
batch redelivered after a crash must give the same outputs again instead of
being applied twice. Each input id maps to the outputs it produced; the
runtime's Nats-Msg-Id de-duplication drops the republished copies.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from schemas import Event

OUTBOX_INPUTS = 5000  # recent inputs whose outputs are kept for redelivery

E = TypeVar("E", bound=Event)


def apply_batch(batch: Sequence[Event], outbox: dict[str, list[E]],
                handle: Callable[[Event], list[E]]) -> tuple[dict[str, E], bool]:
    """Handle each event in event-time order, or replay its stored outputs if it was seen.

    Returns the outputs by id and whether any input produced new ones."""
    outputs: dict[str, E] = {}
    produced = False
    for event in sorted(batch, key=lambda e: e.observed_at):
        if event.id and event.id in outbox:
            for out in outbox[event.id]:
                outputs.setdefault(out.id, out)
            continue
        made = handle(event)
        if made:
            produced = True
            for out in made:
                outputs[out.id] = out
            if event.id:
                outbox[event.id] = made
    return outputs, produced


def trim(outbox: dict[str, list[E]], keep: int = OUTBOX_INPUTS) -> None:
    """Forget the oldest inputs beyond ``keep`` (dicts keep insertion order).

    One pass: ``next(iter(outbox))`` per input would walk past every slot deleted
    before it each time (a dict compacts only when it grows)."""
    excess = len(outbox) - keep
    if excess > 0:
        for key in list(itertools.islice(outbox, excess)):
            del outbox[key]
