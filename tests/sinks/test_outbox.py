"""The outbox the state-file sinks share: replay of seen inputs, and its bound."""

from __future__ import annotations

from schemas import HostSeen
from sinks._outbox import apply_batch, trim
from tests.factories import at


def test_trim_keeps_the_newest_inputs_in_order() -> None:
    outbox = {f"in-{n}": [n] for n in range(10)}
    trim(outbox, keep=4)
    assert list(outbox) == ["in-6", "in-7", "in-8", "in-9"]
    trim(outbox, keep=4)
    assert len(outbox) == 4
    for n in range(10, 13):       # one at a time, as batches add them
        outbox[f"in-{n}"] = [n]
        trim(outbox, keep=4)
    assert list(outbox) == ["in-9", "in-10", "in-11", "in-12"]


def test_a_seen_input_gets_its_stored_outputs_instead_of_being_handled_again() -> None:
    def event(n: int) -> HostSeen:
        return HostSeen(host_key=f"198.18.0.{n}", observed_at=at(n), source="icmp",
                        ip=f"198.18.0.{n}", id=f"in-{n}")
    handled: list[str] = []

    def handle(e: object) -> list[HostSeen]:
        assert isinstance(e, HostSeen)
        handled.append(e.id)
        return [HostSeen(host_key=e.host_key, observed_at=e.observed_at, source="out", id=f"out-{e.id}")]
    outbox: dict[str, list[HostSeen]] = {}
    first, produced = apply_batch([event(2), event(1)], outbox, handle)
    assert produced and handled == ["in-1", "in-2"]          # in event time
    again, produced = apply_batch([event(1), event(3)], outbox, handle)
    assert handled == ["in-1", "in-2", "in-3"]
    assert list(again) == ["out-in-1", "out-in-3"] and again["out-in-1"] is first["out-in-1"]
