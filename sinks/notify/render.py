"""Message templates: a title, a plain-text body and a Markdown body per notification.

Templates come from config (a rule's ``title``, ``text``, ``markdown``) and are
Jinja2, rendered in its ImmutableSandboxedEnvironment: the event's fields (hostnames,
banners, lease comments, VM names) are attacker-controlled text. Every value a
template prints goes through ``finalize``: control characters become spaces and
long values are cut, and in Markdown the characters that start formatting or links
are escaped, so a hostname cannot add a line, a link or markup of its own. The
defaults below are used for a rule that sets none; a template that fails at render
time falls back to them (and says so in the log).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from schemas import Event, Finding, HostChanged

from .model import Held, HostFacts
from .rules import Rule

log = logging.getLogger(__name__)

MAX_VALUE = 300          # characters of one printed value
MAX_TITLE = 250
MAX_BODY = 4000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#|~])")

DEFAULT_TITLE = """\
{%- if kind == "digest" -%}{{ count }} LAN events ({{ rule }}{% if why != "digest" %}, {{ why }}{% endif %})
{%- elif kind == "new" -%}New host: {{ host.label }}
{%- elif kind == "gone" -%}Host gone: {{ host.label }}
{%- elif kind == "back" -%}Host back: {{ host.label }}
{%- elif kind == "flapping" -%}Host flapping: {{ host.label }}
{%- elif kind == "changed" -%}Host changed: {{ host.label }} ({{ changes|map(attribute="field")|join(", ") }})
{%- elif kind == "finding_opened" -%}Finding [{{ finding.severity }}]: {{ finding.title }}
{%- elif kind == "finding_resolved" -%}Resolved: {{ finding.title }}
{%- else -%}{{ kind }}: {{ host.label }}{%- endif -%}"""

DEFAULT_TEXT = """\
{%- if kind == "digest" -%}
{% for e in events %}- {{ e.when }}  {{ e.title }}
{% endfor %}
{%- else -%}
{% if finding %}{{ finding.title }} ({{ finding.severity }}, rule {{ finding.rule }})
{% if finding.evidence %}Evidence: {{ finding.evidence }}
{% endif %}{% endif -%}
Host: {{ host.name }}{% if host.ip and host.ip != host.name %}  IP {{ host.ip }}{% endif %}
{% if host.mac %}MAC: {{ host.mac }}{% if host.vendor %} ({{ host.vendor }}){% endif %}
{% endif %}{% if host.device_type %}Device type: {{ host.device_type }}
{% endif %}{% if host.open_ports %}Open ports: {{ host.open_ports|join(", ") }}
{% endif %}{% for c in changes %}{{ c.field }}: {{ c.old }} -> {{ c.new }}
{% endfor %}{% if evidence %}Evidence: {{ evidence }}
{% endif %}When: {{ when }}{% if not host.known %} (unknown host){% endif %}
{%- endif -%}"""

DEFAULT_MARKDOWN = """\
{%- if kind == "digest" -%}
{% for e in events %}- {{ e.when }} **{{ e.title }}**
{% endfor %}
{%- else -%}
{% if finding %}**{{ finding.title }}** ({{ finding.severity }}, rule `{{ finding.rule }}`)
{% if finding.evidence %}Evidence: {{ finding.evidence }}
{% endif %}{% endif -%}
**Host:** {{ host.name }}{% if host.ip and host.ip != host.name %} · IP {{ host.ip }}{% endif %}
{% if host.mac %}**MAC:** {{ host.mac }}{% if host.vendor %} ({{ host.vendor }}){% endif %}
{% endif %}{% if host.device_type %}**Device type:** {{ host.device_type }}
{% endif %}{% if host.open_ports %}**Open ports:** {{ host.open_ports|join(", ") }}
{% endif %}{% for c in changes %}**{{ c.field }}:** {{ c.old }} → {{ c.new }}
{% endfor %}{% if evidence %}**Evidence:** {{ evidence }}
{% endif %}**When:** {{ when }}{% if not host.known %} (unknown host){% endif %}
{%- endif -%}"""


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "-"
    return str(value)


def plain(value: Any) -> str:
    """One printed value as plain text: no control characters, at most MAX_VALUE characters."""
    text = _CONTROL.sub(" ", _value(value))
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE - 1] + "…"


def markdown(value: Any) -> str:
    """One printed value in Markdown: plain, with formatting and link characters escaped."""
    return _MARKDOWN.sub(r"\\\1", plain(value))


def _environment(finalize: Callable[[Any], str]) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(finalize=finalize, undefined=jinja2.ChainableUndefined,
                                         autoescape=False, trim_blocks=False)


class Templates:
    """A rule's three templates, compiled once (its own, else the defaults)."""

    _text_env = _environment(plain)
    _markdown_env = _environment(markdown)

    def __init__(self, rule: str, *, title: str = "", text: str = "", markdown: str = "") -> None:
        self.rule = rule
        self.title = self._text_env.from_string(title or DEFAULT_TITLE)
        self.text = self._text_env.from_string(text or DEFAULT_TEXT)
        self.markdown = self._markdown_env.from_string(markdown or DEFAULT_MARKDOWN)
        self._defaults = (not title, not text, not markdown)

    @staticmethod
    def problems(title: str, text: str, markdown: str) -> list[tuple[str, str]]:
        """(key, problem) for each template that does not parse."""
        out = []
        for key, source in (("title", title), ("text", text), ("markdown", markdown)):
            if source:
                try:
                    Templates._text_env.parse(source)
                except jinja2.TemplateSyntaxError as exc:
                    out.append((key, f"template syntax error on line {exc.lineno}: {exc.message}"))
        return out

    def render(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        """(title, text, markdown); a template that fails falls back to the default."""
        title = self._one(self.title, DEFAULT_TITLE, self._text_env, context, "title", self._defaults[0])
        text = self._one(self.text, DEFAULT_TEXT, self._text_env, context, "text", self._defaults[1])
        md = self._one(self.markdown, DEFAULT_MARKDOWN, self._markdown_env, context, "markdown",
                       self._defaults[2])
        title = " ".join(title.split())
        return (title[:MAX_TITLE], text.strip()[:MAX_BODY], md.strip()[:MAX_BODY])

    def _one(self, template: jinja2.Template, default: str, env: ImmutableSandboxedEnvironment,
             context: Mapping[str, Any], key: str, is_default: bool) -> str:
        try:
            return template.render(context)
        except jinja2.TemplateError as exc:
            if is_default:
                raise
            log.warning("rule %s: its %s template failed (%s: %s); using the default",
                        self.rule, key, type(exc).__name__, plain(exc))
            return env.from_string(default).render(context)


def host_context(facts: HostFacts | None, host_key: str, *, known: bool,
                 tags: frozenset[str]) -> dict[str, Any]:
    """The ``host`` a template sees."""
    f = facts or HostFacts(host_key=host_key)
    label = f.name if not f.ip or f.name == f.ip else f"{f.name} ({f.ip})"
    return {"key": f.host_key, "name": f.name, "label": label, "ip": f.ip, "mac": f.mac,
            "hostname": f.hostname, "vendor": f.vendor, "device_type": f.device_type, "vm_name": f.vm_name,
            "dhcp_type": f.dhcp_type, "os_hint": f.os_hint, "open_ports": list(f.open_ports),
            "active": f.active, "known": known, "tags": sorted(tags), "first_seen": f.first_seen,
            "last_seen": f.last_seen}


def event_context(event: Event, kind: str, rule: str, host: dict[str, Any],
                  zone: tzinfo | None) -> dict[str, Any]:
    """What a template sees for one event (README.md: Templates)."""
    context: dict[str, Any] = {
        "kind": kind, "rule": rule, "host": host, "changes": [], "evidence": None, "finding": None,
        "when": when(event.observed_at, zone), "event": msgspec.to_builtins(event),
    }
    if isinstance(event, HostChanged):
        context["changes"] = [{"field": c.field, "old": _value(c.old) or "-", "new": _value(c.new) or "-"}
                              for c in event.changes]
        context["evidence"] = event.evidence
    elif isinstance(event, Finding):
        context["finding"] = {"id": event.finding_id, "rule": event.rule, "title": event.title,
                              "severity": event.severity.value, "category": event.category,
                              "state": event.state.value, "ip": event.ip, "port": event.port,
                              "evidence": event.evidence}
        context["evidence"] = event.evidence or None
    return context


def when(moment: datetime, zone: tzinfo | None) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z").strip()


class Renderer:
    """One rule's messages: for one event, and for a digest of the events it held."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule.name
        self.templates = Templates(rule.name, title=rule.title, text=rule.text, markdown=rule.markdown)
        self.zone = rule.quiet_hours.zone() if rule.quiet_hours is not None else None

    def host(self, facts: HostFacts | None, host_key: str, *, known: bool,
             tags: frozenset[str]) -> dict[str, Any]:
        return host_context(facts, host_key, known=known, tags=tags)

    def when(self, moment: datetime) -> str:
        return when(moment, self.zone)

    def event(self, event: Event, kind: str, host: dict[str, Any]) -> tuple[str, str, str]:
        return self.templates.render(event_context(event, kind, self.rule, host, self.zone))

    def digest(self, items: list[Held], why: str) -> tuple[str, str, str]:
        events = [{"kind": h.kind, "title": h.title, "text": h.text, "when": h.when, "host": h.host,
                   "event": msgspec.json.decode(bytes(h.event))} for h in items]
        return self.templates.render({"kind": "digest", "rule": self.rule, "why": why, "count": len(items),
                                      "events": events, "host": {}, "changes": [], "finding": None})


__all__ = [
    "DEFAULT_MARKDOWN",
    "DEFAULT_TEXT",
    "DEFAULT_TITLE",
    "Renderer",
    "Templates",
    "event_context",
    "host_context",
    "markdown",
    "plain",
    "when",
]
