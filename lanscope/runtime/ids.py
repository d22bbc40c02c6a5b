"""Deterministic event ids (also the ``Nats-Msg-Id``), shared by the bus and the local composer.

A retried publish or a redelivered input must produce the same ids, so
JetStream's de-duplication drops the second copy and sinks can key writes on
the id:

- a producer's event: a hash of its subject and payload (without the id), so the
  same sighting published twice within the duplicate window is stored once;
- an enricher's output: derived from the input event's id, the stage and the
  output's index, so a redelivered input yields the same ids;
- a sink's output: the sink may set the id itself (an outbox knows it);
  otherwise a hash of the stage, subject and payload, because a batch is not
  one input and may be composed differently when redelivered.
"""

from __future__ import annotations

import hashlib

import msgspec

from schemas import Event, encode, subject_for

_ID_BYTES = 16   # 128 bits: collision-free for any realistic volume, short in headers


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=_ID_BYTES)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.hexdigest()


def content_id(event: Event, salt: str = "") -> str:
    """An id from the event's subject and payload, ignoring any id it already has."""
    blank = msgspec.structs.replace(event, id="") if event.id else event
    return _digest(salt.encode(), subject_for(event).encode(), encode(blank))


def payload_id(subject: str, payload: bytes) -> str:
    """An id for a message that arrived without one (published by another tool)."""
    return _digest(b"payload", subject.encode(), payload)


def derived_id(input_id: str, stage: str, index: int) -> str:
    """The id of output ``index`` of ``stage`` handling the input with ``input_id``."""
    return _digest(b"derived", input_id.encode(), stage.encode(), str(index).encode())


def fill_producer_ids(events: list[Event], site: str = "") -> None:
    """Ids for a producer's events, which are of the process's ``site`` (stamped first: the
    site is part of what the id hashes)."""
    for event in events:
        if site and not event.site:
            event.site = site
        if not event.id:
            event.id = content_id(event)


def fill_enricher_ids(outputs: list[Event], input_id: str, stage: str, site: str = "") -> None:
    """Ids for an enricher's outputs, which are of the ``site`` of their input."""
    for index, event in enumerate(outputs):
        if site and not event.site:
            event.site = site
        event.id = derived_id(input_id, stage, index)


def fill_sink_ids(outputs: list[Event], stage: str) -> None:
    for event in outputs:
        if not event.id:
            event.id = content_id(event, salt=stage)
