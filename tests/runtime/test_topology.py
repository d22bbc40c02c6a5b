"""Feed planning: how the stages of one process read their streams."""

from __future__ import annotations

from lanscope.runtime.topology import STAGES, Kind, own_feeds, sink_feeds
from schemas import subjects as subj
from tests.runtime.stages import spec

FACTS = subj.FACTS.name


def test_sinks_of_one_process_share_a_feed_per_stream() -> None:
    feeds = {(f.stream, f.spec.durable): f for f in sink_feeds(STAGES.values())}
    # Producers and enrichers have no feed; host_state and findings share the facts,
    # all four sinks the changes, each message of which one of them wants at least.
    assert set(feeds) == {(FACTS, "findings+host_state"),
                          (subj.CHANGES.name, "findings+host_state+notify+registry")}
    facts = feeds[FACTS, "findings+host_state"]
    assert facts.members == ("findings", "host_state") and facts.shared
    assert list(facts.spec.consumes) == list(subj.everywhere(    # the union, each once
        subj.HOST_SEEN, subj.HOST_PORTS, subj.HOST_ANNOTATED, subj.SWEEP_COMPLETED, subj.HOST_UNREACHABLE))
    assert facts.spec.batch_size == STAGES["host_state"].batch_size and facts.spec.max_replicas == 1
    # A sink alone on its streams reads through its own durable, as before.
    alone = sink_feeds([STAGES["host_state"], STAGES["port_probe"]])
    assert [(f.stream, f.spec, f.shared) for f in alone] == [
        (FACTS, STAGES["host_state"], False), (subj.CHANGES.name, STAGES["host_state"], False)]


def test_an_enricher_reads_each_stream_through_its_own_durable() -> None:
    probe = STAGES["port_probe"]
    assert [(f.stream, f.spec, f.members, f.shared) for f in own_feeds(probe)] == [
        (FACTS, probe, ("port_probe",), False),                       # sightings
        (subj.REQUESTS.name, probe, ("port_probe",), False)]          # "probe now"
    both = spec("both", Kind.ENRICHER, consumes=(subj.HOST_SEEN, subj.HOST_CHANGED))
    assert [f.stream for f in own_feeds(both)] == [FACTS, subj.CHANGES.name]
