"""Home Assistant MQTT discovery: the topics and payloads an MQTT target publishes.

As Home Assistant's MQTT discovery documents it (integrations/mqtt, "MQTT
Discovery"; integrations/device_tracker.mqtt, sensor.mqtt, event.mqtt):

- one ``device_tracker`` per host at ``<discovery_prefix>/device_tracker/<unique_id>/config``
  (``<object_id>`` is the unique_id, no ``<node_id>``: the documented best practice),
  with ``source_type: router``, ``payload_home``/``payload_not_home``, a retained
  state (``home``/``not_home``) and JSON attributes; its ``device`` block carries
  ``connections: [["mac", <mac>]]`` and no identifiers, so Home Assistant merges it
  with a device another integration (a router, ESPHome) knows by the same MAC;
- sensors for hosts online, hosts known and open findings, and an ``event`` entity
  that fires on every notification, on a "lanscope" device;
- every entity names ``<topic_prefix>/status`` as its availability topic, which the
  client sets to ``online`` (retained) and leaves ``offline`` as its last will.

Everything here is pure: topics and JSON for the state notify keeps.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from lanscope import __version__
from schemas import CANONICAL_MAC

from .model import HostFacts, Note, OpenFinding
from .rules import KINDS, SEVERITIES

ORIGIN = {"name": "lanscope", "sw_version": __version__}
EVENT_TYPES = [*KINDS, "digest"]
MAX_FINDINGS = 50        # open findings listed in the sensor's attributes
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
_SEVERITY_RANK = {s.value: i for i, s in enumerate(reversed(SEVERITIES))}   # critical 0 .. info 4


def node_id(topic_prefix: str) -> str:
    """The unique_id prefix: the topic prefix in the characters discovery topics allow."""
    return _UNSAFE.sub("_", topic_prefix).strip("_") or "lanscope"


def object_id(host_key: str) -> str:
    """A host's id in topics: its MAC without colons, else ``ip-`` and its address."""
    if CANONICAL_MAC.fullmatch(host_key):
        return host_key.replace(":", "")
    return "ip-" + _UNSAFE.sub("-", host_key)


class Topics:
    """The topics of one MQTT target."""

    def __init__(self, topic_prefix: str, discovery_prefix: str) -> None:
        self.prefix = topic_prefix.rstrip("/")
        self.discovery = discovery_prefix.rstrip("/")
        self.node = node_id(topic_prefix)
        self.status = f"{self.prefix}/status"
        self.stats = f"{self.prefix}/stats"
        self.findings = f"{self.prefix}/findings"
        self.notification = f"{self.prefix}/notification"
        self.birth = f"{self.discovery}/status"

    def host_state(self, host_key: str) -> str:
        return f"{self.prefix}/host/{object_id(host_key)}/state"

    def host_attributes(self, host_key: str) -> str:
        return f"{self.prefix}/host/{object_id(host_key)}/attributes"

    def unique_id(self, name: str) -> str:
        return f"{self.node}_{name}"

    def config(self, component: str, unique_id: str) -> str:
        return f"{self.discovery}/{component}/{unique_id}/config"


def entity_id(component: str, uid: str) -> dict[str, str]:
    """The entity id Home Assistant should give: ``object_id`` as its MQTT discovery documents
    it, and ``default_entity_id``, which newer releases take instead (each drops the key it
    does not know, so both are safe)."""
    return {"object_id": uid, "default_entity_id": f"{component}.{uid.replace('-', '_')}"}


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def tracker(topics: Topics, host: HostFacts) -> tuple[str, bytes]:
    """A host's device_tracker discovery config (topic, payload)."""
    uid = topics.unique_id(object_id(host.host_key))
    device: dict[str, Any] = {"name": host.name}
    if host.mac:
        device["connections"] = [["mac", host.mac]]
    else:
        device["identifiers"] = [uid]
    if host.vendor:
        device["manufacturer"] = host.vendor
    payload = {
        "name": None,                      # the device's name is the entity's
        "unique_id": uid,
        **entity_id("device_tracker", uid),
        "state_topic": topics.host_state(host.host_key),
        "json_attributes_topic": topics.host_attributes(host.host_key),
        "payload_home": "home",
        "payload_not_home": "not_home",
        "source_type": "router",
        "availability_topic": topics.status,
        "qos": 1,
        "device": device,
        "origin": ORIGIN,
    }
    return topics.config("device_tracker", uid), _json(payload)


def tracker_state(host: HostFacts) -> bytes:
    return b"home" if host.active else b"not_home"


def tracker_attributes(host: HostFacts) -> bytes:
    return _json({"ip": host.ip, "mac": host.mac, "host_name": host.hostname, "vendor": host.vendor,
                  "device_type": host.device_type, "vm_name": host.vm_name, "os_hint": host.os_hint,
                  "open_ports": host.open_ports, "first_seen": host.first_seen, "last_seen": host.last_seen,
                  "host_key": host.host_key})


def _hub(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [topics.unique_id("lanscope")], "name": "lanscope", "manufacturer": "lanscope",
            "model": "LAN observer", "sw_version": __version__}


def hub_configs(topics: Topics) -> list[tuple[str, bytes]]:
    """The lanscope device's entities: host counts, open findings, the notification event."""
    out = []
    for key, name, icon, unit in (("hosts_online", "Hosts online", "mdi:lan-connect", "hosts"),
                                  ("hosts_total", "Hosts known", "mdi:lan", "hosts"),
                                  ("open_findings", "Open findings", "mdi:shield-alert", "findings")):
        uid = topics.unique_id(key)
        payload: dict[str, Any] = {
            "name": name, "unique_id": uid, **entity_id("sensor", uid), "state_topic": topics.stats,
            "value_template": f"{{{{ value_json.{key} }}}}", "state_class": "measurement",
            "unit_of_measurement": unit, "icon": icon, "availability_topic": topics.status, "qos": 1,
            "device": _hub(topics), "origin": ORIGIN,
        }
        if key == "open_findings":
            payload["json_attributes_topic"] = topics.findings
        out.append((topics.config("sensor", uid), _json(payload)))
    uid = topics.unique_id("notifications")
    out.append((topics.config("event", uid), _json({
        "name": "Notifications", "unique_id": uid, **entity_id("event", uid),
        "state_topic": topics.notification, "event_types": EVENT_TYPES, "icon": "mdi:bell-ring",
        "availability_topic": topics.status, "qos": 1, "device": _hub(topics), "origin": ORIGIN})))
    return out


def stats(hosts: dict[str, HostFacts], findings: dict[str, OpenFinding]) -> bytes:
    return _json({"hosts_online": sum(h.active for h in hosts.values()), "hosts_total": len(hosts),
                  "open_findings": len(findings)})


def findings_attributes(findings: dict[str, OpenFinding]) -> bytes:
    listed = sorted(findings.values(), key=lambda f: (_SEVERITY_RANK.get(f.severity, 9),
                                                      f.first_seen.isoformat() if f.first_seen else ""))
    return _json({"findings": [{"title": f.title, "severity": f.severity, "rule": f.rule, "ip": f.ip,
                                "port": f.port, "id": f.finding_id} for f in listed[:MAX_FINDINGS]],
                  "more": max(len(listed) - MAX_FINDINGS, 0)})


def notification(note: Note) -> bytes:
    """A notification as the event entity takes it (``event_type`` and attributes)."""
    events = [msgspec.json.decode(bytes(e)) for e in note.events]
    return _json({"event_type": note.kind, "id": note.event_id, "rule": note.rule, "title": note.title,
                  "text": note.text, "markdown": note.markdown, "subject": note.subject,
                  "observed_at": note.observed_at, "event": events[0] if note.kind != "digest" else None,
                  "events": events if note.kind == "digest" else None})


__all__ = ["EVENT_TYPES", "ORIGIN", "Topics", "findings_attributes", "hub_configs", "node_id", "notification",
           "object_id", "stats", "tracker", "tracker_attributes", "tracker_state"]
