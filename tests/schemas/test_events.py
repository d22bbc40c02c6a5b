"""The event contract: round trips, tags, schema export, evolution rules."""

from __future__ import annotations

import msgspec
import pytest

from lanscope.runtime.topology import PUBLISHED_BY_PEOPLE, STAGES
from schemas import (
    EVENT_TYPES,
    PortState,
    decode,
    encode,
    json_schema,
    matches,
    normalize_mac,
    stream_for,
    subject_for,
    tag_of,
)
from schemas import subjects as subj
from tests import factories


@pytest.mark.parametrize("event", [
    factories.host_seen(rtt_ms=0.4, ttl=64),
    factories.ports_probed(),
    factories.host_annotated(hostname="ssh.lab.test"),
])
def test_round_trip(event: msgspec.Struct) -> None:
    assert decode(encode(event)) == event


def test_tags_are_explicit_snake_case() -> None:
    tags = [tag_of(t) for t in EVENT_TYPES]
    assert len(set(tags)) == len(tags)
    for event_type, tag in zip(EVENT_TYPES, tags, strict=True):
        assert tag != event_type.__name__ and tag == tag.lower()


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    data = msgspec.json.decode(encode(factories.host_seen()))
    data["field_from_the_future"] = {"x": 1}
    assert decode(msgspec.json.encode(data)) == factories.host_seen()


def test_decode_error_names_the_field() -> None:
    data = msgspec.json.decode(encode(factories.host_seen()))
    data["ttl"] = 999
    with pytest.raises(msgspec.ValidationError, match=r"\$\.ttl"):
        decode(msgspec.json.encode(data))


def test_new_fields_have_defaults() -> None:
    # Additive-only evolution: only the base fields may be required.
    required_base = {"host_key", "observed_at", "source"}
    allowed = {"HostChanged": {"kind", "host"}, "PortsProbed": {"ip"}, "ProbeRequested": {"ip"},
               "HostCheckRequested": {"ip"}, "HostUnreachable": {"ip", "request_id", "started_at"},
               "Finding": {"finding_id", "state", "rule", "severity", "category", "title",
                           "first_seen", "last_seen"},
               "RegistryEntry": {"entry_id", "action"}}
    for event_type in EVENT_TYPES:
        info = msgspec.inspect.type_info(event_type)
        required = {f.name for f in info.fields if f.required}  # type: ignore[attr-defined]
        assert required <= required_base | allowed.get(event_type.__name__, set()), event_type


def test_json_schema_covers_every_event() -> None:
    schema = json_schema()
    assert {t.__name__ for t in EVENT_TYPES} <= set(schema["$defs"])
    states = schema["$defs"]["PortState"]["enum"]
    assert set(states) == {s.value for s in PortState} and len(states) == 6


def test_every_event_has_a_subject_in_a_stream() -> None:
    assert set(subj.SUBJECTS) == set(EVENT_TYPES)          # one table, every event type in it
    for event in (factories.host_seen(), factories.ports_probed(), factories.host_annotated()):
        subject = subject_for(event)
        stream_for(subject)
        assert matches(subj.SUBJECTS[type(event)][0], subject)


def test_every_consumed_subject_is_produced_by_someone() -> None:
    produced = {subj.SUBJECTS[t][0] for spec in STAGES.values() for t in spec.emits}
    produced |= set(PUBLISHED_BY_PEOPLE)       # probe now, from the dashboard
    produced |= {subj.any_site(p) for p in produced}   # ... at every site
    for spec in STAGES.values():
        for pattern in spec.consumes:
            assert pattern in produced, f"{spec.qualified} consumes {pattern} that nobody emits"


@pytest.mark.parametrize(("pattern", "subject", "expected"), [
    ("lanscope.host.seen.>", "lanscope.host.seen.arp", True),
    ("lanscope.host.seen.>", "lanscope.host.seen", False),
    ("lanscope.host.*", "lanscope.host.ports", True),
    ("lanscope.host.*", "lanscope.host.seen.arp", False),
    ("lanscope.host.ports", "lanscope.host.ports", True),
])
def test_subject_matching(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("AA:BB:CC:DD:EE:FF", "aa:bb:cc:dd:ee:ff"),
    ("aa-bb-cc-dd-ee-ff", "aa:bb:cc:dd:ee:ff"),
    ("aabb.ccdd.eeff", "aa:bb:cc:dd:ee:ff"),
    ("0:0:5e:0:53:1", "00:00:5e:00:53:01"),
])
def test_normalize_mac(raw: str, expected: str) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize("raw", ["", "aa:bb:cc", "zz:bb:cc:dd:ee:ff", "aabbccddeeff00"])
def test_normalize_mac_rejects(raw: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        normalize_mac(raw)


# ---------------------------------------------------------------- checked at decode (issue 20)

def _wire(event: msgspec.Struct, **changes: object) -> bytes:
    tree = msgspec.json.decode(encode(event))   # type: ignore[arg-type]
    for path, value in changes.items():
        node = tree
        *parents, last = path.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    return msgspec.json.encode(tree)


LEASE = factories.host_seen(lease={"address": "198.18.0.10", "mac": "02:00:00:00:00:10"})


@pytest.mark.parametrize(("event", "changes", "problem"), [
    (factories.host_seen(), {"ip": "999.1.1.1"}, "ip: '999.1.1.1' is not an IP address"),
    (factories.host_seen(), {"ip": "198.18.0"}, "ip: '198.18.0' is not an IP address"),
    (factories.host_seen(), {"mac": "02-00-00-00-00-10"}, "Expected `str` matching regex"),
    (factories.host_seen(), {"ttl": 256}, "Expected `int` <= 255 - at `$.ttl`"),
    (factories.host_seen(), {"rtt_ms": -1.0}, "Expected `float` >= 0"),
    (factories.host_seen(), {"source": "s" * 256}, "length <= 255 - at `$.source`"),
    (factories.host_seen(), {"host_key": "k" * 513}, "length <= 512 - at `$.host_key`"),
    (LEASE, {"lease__address": "10.0.0.300"}, "lease.address: '10.0.0.300' is not an IP address"),
    (factories.ports_probed(), {"ip": "1::2::3"}, "ip: '1::2::3' is not an IP address"),
    (factories.ports_probed(), {"ports": [{"protocol": "tcp", "port": 65536, "state": "open"}]},
     "Expected `int` <= 65535 - at `$.ports[0].port`"),
    (factories.host_annotated(), {"ip": "1.2.3.4.5"}, "ip: '1.2.3.4.5' is not an IP address"),
    # A site is a subject token (issue 24), capped, and never an entity's name.
    (factories.host_seen(), {"site": "s" * 33}, "matching regex"),
    (factories.host_seen(), {"site": "paris.host"}, "matching regex"),
    (factories.host_seen(), {"site": "*"}, "matching regex"),
    (factories.host_seen(), {"site": "dlq"}, "matching regex"),
    (factories.ports_probed(), {"site": "host"}, "at `$.site`"),
])
def test_a_value_no_stage_can_use_is_refused_at_decode(event: msgspec.Struct, changes: dict[str, object],
                                                      problem: str) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        decode(_wire(event, **changes))
    assert problem in str(error.value)


def test_a_site_decodes_when_it_can_name_one() -> None:
    from schemas import check_site

    for site in ("", "paris", "site-2", "a_b", "hosts", "dlq2", "s" * 32):
        assert decode(_wire(factories.host_seen(), site=site)).site == site
        assert check_site(site) == site      # the config's rule and the wire's agree


def test_an_address_decodes_to_its_canonical_text() -> None:
    event = decode(_wire(factories.host_seen(ip="fd00:1a5::10", mac=None), ip="FD00:01A5:0::0010"))
    assert event.ip == "fd00:1a5::10"     # type: ignore[union-attr]


@pytest.mark.parametrize(("event", "text", "canonical"), [
    (factories.host_seen(mac=None), "FD00:01A5:0::0042", "fd00:1a5::42"),
    (factories.ports_probed(mac=None), "FE80:0::0043", "fe80::43"),
])
def test_an_address_seen_before_still_decodes_to_its_canonical_text(event: msgspec.Struct, text: str,
                                                                    canonical: str) -> None:
    # canonical_ip remembers each text it has seen, the non-canonical ones too: the second
    # event with the same text must come out canonical as the first did.
    wire = _wire(event, ip=text)
    first, second = decode(wire), decode(wire)
    assert first.ip == second.ip == canonical      # type: ignore[attr-defined]


def test_a_sweep_coverage_that_is_not_a_cidr_is_refused_on_construction_too() -> None:
    from schemas import SweepCompleted

    with pytest.raises(ValueError, match=r"covered\[1\] '198.18.0.1/24' is not a CIDR"):
        SweepCompleted(host_key="s", observed_at=factories.at(0), source="arp",
                       covered=["198.18.0.0/24", "198.18.0.1/24"])
