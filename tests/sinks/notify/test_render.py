"""Message templates: the defaults for every kind, the sandbox, and attacker-controlled text kept as text."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sinks.notify.model import Held, HostFacts
from sinks.notify.render import Renderer
from sinks.notify.rules import Rule
from tests.sinks.notify.events import changed, finding


def render(event: Any, kind: str, **rule: Any) -> tuple[str, str, str]:
    renderer = Renderer(Rule(name="r", targets=["t"], **rule))
    facts = HostFacts.of(event) if hasattr(event, "host") else HostFacts(host_key=event.host_key, ip=event.ip)
    return renderer.event(event, kind, renderer.host(facts, event.host_key, known=False, tags=frozenset()))


@pytest.mark.parametrize(("event", "kind", "title"), [
    (changed("new", hostname="f01.lab.test"), "new", "New host: f01.lab.test (198.18.0.2)"),
    (changed("gone", hostname="f01.lab.test", active=False), "gone", "Host gone: f01.lab.test (198.18.0.2)"),
    (changed("back"), "back", "Host back: 198.18.0.2"),
    (changed("changed", changes=[("open_ports", ["tcp/80"], []), ("services", ["tcp/80 http"], [])]),
     "changed", "Host changed: 198.18.0.2 (open_ports, services)"),
    (changed("changed", changes=[("flapping", False, True)]), "flapping", "Host flapping: 198.18.0.2"),
    (finding("opened"), "finding_opened", "Finding [medium]: FTP server exposed"),
    (finding("resolved"), "finding_resolved", "Resolved: FTP server exposed"),
])
def test_default_titles(event: Any, kind: str, title: str) -> None:
    assert render(event, kind)[0] == title


def test_default_bodies_carry_the_facts() -> None:
    event = changed("gone", hostname="f01.lab.test", vendor="Raspberry Pi", active=False,
                    changes=[("active", True, False)], open_ports=["tcp/22"])
    event.evidence = "missed 3 sweeps; arp and icmp probes unanswered"
    _, text, md = render(event, "gone")
    assert "MAC: dc:a6:32:00:00:02 (Raspberry Pi)" in text and "active: True -> False" in text
    assert "Evidence: missed 3 sweeps; arp and icmp probes unanswered" in text
    assert "**MAC:** dc:a6:32:00:00:02 (Raspberry Pi)" in md and "**active:** True → False" in md
    _, text, _ = render(finding("opened"), "finding_opened")
    assert text.startswith("FTP server exposed (medium, rule ftp-open)\nEvidence: 220 (vsFTPd 3.0.3)")


def test_hostile_text_stays_text() -> None:
    evil = "x\r\nFake: line [click](http://evil.example) <b>*bold*</b> `code`"
    title, text, md = render(changed("new", hostname=evil), "new")
    assert "\n" not in title and "\r" not in text
    assert "Fake: line" in text and "\nFake" not in text               # no line of its own
    assert "\\[click\\](http://evil.example)" in md and "\\<b\\>\\*bold\\*\\</b\\>" in md
    assert "\\`code\\`" in md


def test_templates_run_sandboxed_and_fall_back_to_the_defaults() -> None:
    title, text, _ = render(changed("new"), "new", title="{{ host.__class__.__mro__ }}!",
                            text="{{ ().__class__.__bases__[0].__subclasses__() }}")
    assert title == "!"                                        # unsafe attributes are undefined
    assert text.startswith("Host: 198.18.0.2")                 # a SecurityError: the default body


def test_templates_cannot_change_the_host_view_the_next_rule_renders() -> None:
    """Every matching rule of an event renders the one host view made for it."""
    event = changed("new", hostname="cam-1")
    facts = HostFacts.of(event)
    meddling, plain = (Renderer(Rule(name=n, targets=["t"], **rule)) for n, rule in (
        ("a", {"title": "{{ host.update({'name': 'spoofed'}) }}x"}), ("b", {})))
    view = meddling.host(facts, event.host_key, known=False, tags=frozenset())
    assert meddling.event(event, "new", view)[0].startswith("New host: cam-1")   # default title
    assert plain.event(event, "new", view)[0] == "New host: cam-1 (198.18.0.2)"


def test_custom_templates_see_the_documented_context() -> None:
    title, text, md = render(changed("new", hostname="cam-1", vendor="Axis"), "new",
                             title="{{ kind|upper }} {{ host.name }} via {{ rule }}",
                             text="{{ host.vendor }} {{ host.known }} {{ event.source }} {{ when[:4] }}",
                             markdown="**{{ host.mac }}**")
    assert title == "NEW cam-1 via r"
    assert text.startswith("Axis False host_state 20")
    assert md == "**dc:a6:32:00:00:02**"


def test_digest() -> None:
    renderer = Renderer(Rule(name="r", targets=["t"]))
    items = []
    for i in range(3):
        event = changed("new", ip=f"198.18.0.{i + 2}", mac=f"02:00:00:00:00:0{i}")
        items.append(Held(key=f"{event.id}/t", target="t", rule="r", kind="new", title=f"New host: h{i}",
                          text="", markdown="", when=f"12:0{i}", host=f"h{i}", subject=event.host_key,
                          event=msgspec.Raw(b"{}"), event_id=event.id, observed_at=event.observed_at,
                          release_at=event.observed_at, why="quiet hours"))
    title, text, md = renderer.digest(items, "quiet hours")
    assert title == "3 LAN events (r, quiet hours)"
    assert text.splitlines() == ["- 12:00  New host: h0", "- 12:01  New host: h1", "- 12:02  New host: h2"]
    assert md.splitlines()[0] == "- 12:00 **New host: h0**"
