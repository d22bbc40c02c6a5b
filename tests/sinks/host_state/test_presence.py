"""Presence in the host book: missed sweeps, the confirmation before `gone`, flapping (no I/O)."""

from __future__ import annotations

from ipaddress import ip_address

import msgspec
import pytest

from lanscope.net.coverage import covered_cidrs
from schemas import ChangeKind, HostChanged, HostCheckRequested
from sinks.host_state import HostBook, PresenceConfig
from tests.factories import at, host_seen, host_unreachable, ports_probed, sweep_completed

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def book(missed: int = 2, grace: float = 60, **policy: float | bool) -> HostBook:
    return HostBook(PresenceConfig(missed_sweeps=missed, grace_secs=grace, **policy))  # type: ignore[arg-type]


def only(changed: list[HostChanged]) -> HostChanged:
    assert len(changed) == 1, changed
    return changed[0]


def known(b: HostBook, t: float = 0, mac: str = MAC_A, source: str = "arp") -> None:
    """The host answers a sweep of ``source`` (which can then miss it) at ``t``."""
    sweep_id = f"{source}-seen-{t}"
    b.fold([host_seen(mac=mac, t=t, sweep_id=sweep_id),
            sweep_completed(t + 0.5, source=source, sweep_id=sweep_id)])


def request_after_misses(b: HostBook, *times: float) -> HostCheckRequested:
    """Sweeps at ``times`` miss the host; the last one asks for the check."""
    for t in times[:-1]:
        assert b.fold([sweep_completed(t)]).requests == []
    folded = b.fold([sweep_completed(times[-1])])
    assert folded.changed == [] and len(folded.requests) == 1, folded
    return folded.requests[0]


def test_missed_sweeps_ask_for_a_check_and_only_its_failure_is_gone() -> None:
    b = book(missed=2, grace=60)
    b.fold([ports_probed(mac=MAC_A, t=-5)])           # tcp/22 open: the check may try it
    known(b)
    assert b.fold([sweep_completed(30)]).requests == []        # one miss
    assert b.fold([sweep_completed(50)]).requests == []        # two, but only 50 s since evidence
    folded = b.fold([msgspec.structs.replace(sweep_completed(90), id="sweep-90")])
    assert folded.changed == [] and b.hosts[MAC_A].record.active
    assert len(folded.requests) == 1
    request = folded.requests[0]
    assert (request.host_key, request.ip, request.mac, request.open_ports) == (
        MAC_A, "198.18.0.10", MAC_A, [22])
    assert request.reason.startswith("missed 3 sweeps covering 198.18.0.10 (last: arp arp-90)")
    assert folded.contributors[request.id] == ["sweep-90"]       # in the outbox with its cause
    # Sweeps while the check runs ask nothing more.
    assert b.fold([sweep_completed(95)]).requests == []
    gone = only(b.fold([host_unreachable(request, t=96, tried=["arp 198.18.0.10 x3"])]).changed)
    assert gone.kind is ChangeKind.GONE and not gone.host.active
    assert [(c.field, c.old, c.new) for c in gone.changes] == [("active", True, False)]
    assert gone.evidence is not None and gone.evidence.startswith(
        "no answer to arp 198.18.0.10 x3; missed 3 sweeps covering 198.18.0.10")
    assert gone.observed_at == at(96)
    back = only(b.fold([host_seen(mac=MAC_A, source="icmp", evidence="echo-reply", t=120)]).changed)
    assert back.kind is ChangeKind.BACK and back.evidence == "echo-reply via icmp"


def test_evidence_during_the_check_cancels_it() -> None:
    b = book(missed=1, grace=0)
    known(b)
    request = request_after_misses(b, 10)
    b.fold([host_seen(mac=MAC_A, source="presence_check", t=11)])     # it answered after all
    assert b.fold([host_unreachable(request, t=12)]).changed == []
    assert b.hosts[MAC_A].record.active and b.hosts[MAC_A].check_id is None


def test_an_answer_to_another_request_is_not_a_gone() -> None:
    b = book(missed=1, grace=0, recheck_secs=5)
    known(b)
    first = request_after_misses(b, 10)
    second = request_after_misses(b, 20)               # no answer within recheck_secs: asked again
    assert second.id != first.id
    assert b.fold([host_unreachable(first, t=21)]).changed == []
    assert only(b.fold([host_unreachable(second, t=22)]).changed).kind is ChangeKind.GONE


def test_an_unanswered_check_is_asked_again_only_after_recheck_secs() -> None:
    b = book(missed=1, grace=0, recheck_secs=60)
    known(b)
    request_after_misses(b, 10)
    assert all(b.fold([sweep_completed(t)]).requests == [] for t in (20, 40, 69))
    assert len(b.fold([sweep_completed(71)]).requests) == 1


def test_without_confirmation_missed_sweeps_are_gone_at_once() -> None:
    b = book(missed=2, grace=60, confirm=False)
    known(b)
    b.fold([sweep_completed(30)])
    folded = b.fold([sweep_completed(90)])
    gone = only(folded.changed)
    assert gone.kind is ChangeKind.GONE and folded.requests == []
    assert "missed 2 sweeps" in (gone.evidence or "") and "arp-reply via arp" in (gone.evidence or "")


def test_a_sweep_that_saw_the_host_or_did_not_cover_it_is_not_a_miss() -> None:
    b = book(missed=1, grace=0)
    known(b)
    assert b.fold([host_seen(mac=MAC_A, t=99.5), sweep_completed(100)]).requests == []
    assert b.fold([sweep_completed(200, covered=["198.18.1.0/24"])]).requests == []
    # What the sweep skipped (here .10 itself: the scanner's own address, say) is not covered,
    # whatever was asked for.
    skipped = covered_cidrs(ip_address(f"198.18.0.{i}") for i in range(1, 255) if i != 10)
    assert b.fold([sweep_completed(250, covered=skipped)]).requests == []
    assert b.hosts[MAC_A].missed_sweeps == 0
    assert len(b.fold([sweep_completed(300, covered=["198.18.0.8/29"])]).requests) == 1


def test_a_kind_of_sweep_that_never_saw_the_host_never_misses_it() -> None:
    b = book(missed=1, grace=0)
    known(b, source="arp")                   # answers ARP; drops ICMP: no icmp sweep ever saw it
    for t in (10, 20, 30):
        assert b.fold([host_seen(mac=MAC_A, t=t - 1, sweep_id=f"arp-{t}"),
                       sweep_completed(t, source="arp", sweep_id=f"arp-{t}"),
                       sweep_completed(t + 5, source="icmp")]).requests == []
    assert b.hosts[MAC_A].missed_sweeps == 0
    assert len(b.fold([sweep_completed(50, source="arp")]).requests) == 1


def test_a_sweep_of_an_older_writer_covers_nothing() -> None:
    b = book(missed=1, grace=0)
    known(b)
    old = msgspec.structs.replace(sweep_completed(100, covered=[]), v=1)   # targets only: not read
    assert old.targets and b.fold([old]).requests == []
    assert b.hosts[MAC_A].missed_sweeps == 0


def test_an_unreadable_coverage_is_an_error_not_a_skip() -> None:
    b = book(missed=1, grace=0)
    known(b)
    with pytest.raises(ValueError, match=r"covered\[1\] '198.18.0.1/24' is not a CIDR"):
        b.fold([sweep_completed(100, covered=["198.19.0.0/16", "198.18.0.1/24"])])


def test_a_late_sighting_older_than_the_gone_decision_does_not_bring_it_back() -> None:
    b = book(missed=1, grace=0)
    known(b)
    b.fold([host_unreachable(request_after_misses(b, 100), t=101)])
    assert b.fold([host_seen(mac=MAC_A, t=50)]).changed == []
    assert not b.hosts[MAC_A].record.active


def test_stale_neighbour_entry_alone_never_makes_a_host_active() -> None:
    b = book()
    event = only(b.fold([host_seen(mac=MAC_A, source="neighbours", alive=False,
                                   neighbour_state="STALE", t=0)]).changed)
    assert event.kind is ChangeKind.NEW and not event.host.active
    assert event.host.last_seen_by == {}
    # Its first evidence later is a change, not a "back".
    event = only(b.fold([host_seen(mac=MAC_A, t=5)]).changed)
    assert event.kind is ChangeKind.CHANGED and ("active", False, True) in [
        (c.field, c.old, c.new) for c in event.changes]


def cycle(b: HostBook, t: float) -> list[HostChanged]:
    """Gone at t (missed, checked, unreachable), back at t + 30; the events of both."""
    request = request_after_misses(b, t - 1)
    out = b.fold([host_unreachable(request, t=t)]).changed
    sweep_id = f"arp-back-{t}"
    return out + b.fold([host_seen(mac=MAC_A, t=t + 30, sweep_id=sweep_id),
                         sweep_completed(t + 30.5, sweep_id=sweep_id)]).changed


def changes(event: HostChanged) -> list[tuple[str, object, object]]:
    return [(c.field, c.old, c.new) for c in event.changes]


def flapping_book() -> HostBook:
    """A host gone and back twice (four transitions, the most that is not flapping), then gone
    once more at 300: flapping, reported as one `changed` event; back at 330, silently."""
    b = book(missed=1, grace=0, flap_transitions=4, flap_window_secs=1000)
    known(b)
    assert [e.kind for e in cycle(b, 100) + cycle(b, 200)] == [ChangeKind.GONE, ChangeKind.BACK] * 2
    start = only(cycle(b, 300))
    assert start.kind is ChangeKind.CHANGED and start.host.flapping
    assert changes(start) == [("flapping", False, True), ("active", True, False)]
    assert b.hosts[MAC_A].record.active                 # back at 330: true on the record, unsaid
    return b


def test_a_flapping_host_is_reported_once_per_window_then_settles() -> None:
    b = flapping_book()
    assert cycle(b, 400) + cycle(b, 500) == []          # within the window: silent
    # A window after the last report, the next state that differs from it is reported.
    report = only(cycle(b, 1400))                       # gone at 1400 = what was said; back at 1430
    assert report.kind is ChangeKind.CHANGED and report.observed_at == at(1430)
    assert changes(report) == [("active", False, True)]
    # A whole window without a transition: no longer flapping (it stayed up: nothing else to say).
    event = only(b.fold([sweep_completed(2500, covered=[])]).changed)
    assert event.kind is ChangeKind.CHANGED and changes(event) == [("flapping", True, False)]
    assert b.fold([sweep_completed(2600, covered=[])]).changed == []


def test_a_host_that_stops_flapping_reports_where_it_settled() -> None:
    b = flapping_book()                                 # last said: gone; back since 330
    event = only(b.fold([sweep_completed(1400, covered=[])]).changed)
    assert event.kind is ChangeKind.BACK
    assert changes(event) == [("flapping", True, False), ("active", False, True)]
    # Its transitions start counting afresh.
    assert [e.kind for e in cycle(b, 1500)] == [ChangeKind.GONE, ChangeKind.BACK]


def test_presence_decided_batch_by_batch_or_at_once_is_the_same() -> None:
    def facts() -> list:  # type: ignore[type-arg]
        return [host_seen(mac=MAC_A, t=0, sweep_id="s0", id="h0"),
                sweep_completed(0.5, sweep_id="s0"), *(sweep_completed(t) for t in (10, 20, 30))]

    one, two = book(missed=2, grace=5), book(missed=2, grace=5)
    at_once = one.fold(facts())
    apart = [two.fold([f]) for f in facts()]
    assert [r.id for r in at_once.requests] == [r.id for f in apart for r in f.requests]
    assert len(at_once.requests) == 1
