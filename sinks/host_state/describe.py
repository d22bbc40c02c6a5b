"""What hosts say about themselves, as host record facts: the fold's hook for the passive
sources (issue 23). Pure.

``seen_facts`` / ``annotated_facts`` turn a sighting's DHCP client options and an
annotation's model, maker, workgroup and SNMP system into ``{field: value}`` for the
fold to set (tracked facts, in event time like every other). ``advertised`` keeps one
list per source and shows their union. ``device_type`` classifies the record again when
its evidence changed (sinks/host_state/device_type.py).
"""

from __future__ import annotations

from typing import Any

from schemas import Advertised, HostAnnotated, HostRecord, HostSeen, LldpNeighbour, SnmpInterface

from .device_type import EVIDENCE_FIELDS, DeviceType, classify_record

# The record fields this module adds, all facts (changes make history and `changed` events).
TRACKED = ("advertised", "model", "manufacturer", "workgroup", "dhcp_fingerprint", "dhcp_vendor_class",
           "sys_object_id", "sys_descr", "interfaces", "neighbours", "device_type")
# Name sources after the ones the fold had (dns, dhcp, lease, proxmox): what a device calls
# itself. A DHCP client's own option 12 (passive) ranks just after the lease it gets;
# an SNMP sysName is set by an administrator; mDNS and NetBIOS names by the device;
# a UPnP friendlyName is a label for people, the last resort.
NAME_SOURCES = ("passive", "snmp", "mdns", "netbios", "ssdp")
_MAX_LIST = 64


def seen_facts(event: HostSeen) -> dict[str, Any]:
    dhcp = event.dhcp
    if dhcp is None:
        return {}
    facts: dict[str, Any] = {}
    if dhcp.parameters:
        facts["dhcp_fingerprint"] = ",".join(str(p) for p in dhcp.parameters)[:255]
    if dhcp.vendor_class:
        facts["dhcp_vendor_class"] = dhcp.vendor_class
    return facts


def annotated_facts(event: HostAnnotated) -> dict[str, Any]:
    facts: dict[str, Any] = {name: getattr(event, name) for name in ("model", "manufacturer", "workgroup")
                             if getattr(event, name)}
    snmp = event.snmp
    if snmp is not None:
        if snmp.sys_object_id:
            facts["sys_object_id"] = snmp.sys_object_id
        if snmp.sys_descr:
            facts["sys_descr"] = snmp.sys_descr
        facts["interfaces"] = [interface_text(i) for i in snmp.interfaces[:_MAX_LIST]]
        facts["neighbours"] = [neighbour_text(n) for n in snmp.neighbours[:_MAX_LIST]]
    return facts


def advertised(by_source: dict[str, list[str]], source: str, announced: list[Advertised]) -> list[str]:
    """Record ``source``'s whole current list in ``by_source``; the union of every source's."""
    by_source[source] = sorted({a.type for a in announced})[:_MAX_LIST]
    return sorted(set().union(*by_source.values()))


def interface_text(interface: SnmpInterface) -> str:
    parts = [interface.name or f"if{interface.index}", interface.mac or ""]
    return " ".join(p for p in parts if p)[:255]


def neighbour_text(n: LldpNeighbour) -> str:
    """"port 3: sw2 port Gi0/1 (00:11:22:33:44:55)"."""
    who = n.system_name or n.chassis_id or "?"
    port = n.port_description or n.port_id
    text = f"port {n.local_port or '?'}: {who}" + (f" port {port}" if port else "")
    if n.system_name and n.chassis_id:
        text += f" ({n.chassis_id})"
    return text[:255]


def needs_device_type(record: HostRecord, created: bool, changed: set[str] | Any) -> bool:
    """Classify again: a new host, one never classified, or one whose evidence changed."""
    return created or record.device_type is None or not EVIDENCE_FIELDS.isdisjoint(changed)


def device_type(record: HostRecord) -> DeviceType:
    found = classify_record(record)
    record.device_type_confidence = found.confidence
    record.device_type_reasons = list(found.reasons)
    return found
