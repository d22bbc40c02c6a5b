"""The SNMP objects the enricher reads, and how their values become an SnmpSystem. Pure.

SNMPv2-MIB system group (sysDescr, sysObjectID, sysName, sysServices), IF-MIB
(ifDescr, ifType, ifPhysAddress; ifName where the agent has IF-MIB's ifXTable)
and LLDP-MIB (lldpRemTable: the neighbours, lldpLocPortTable: our side's port
names). Values arrive as Python values keyed by their numeric OID text: bytes
for OCTET STRINGs, int for integers, str for OBJECT IDENTIFIERs. They are agent
input: decoded with replacement and capped.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from schemas import LldpNeighbour, SnmpInterface, SnmpSystem

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_SERVICES = "1.3.6.1.2.1.1.7.0"
SYSTEM = (SYS_NAME, SYS_DESCR, SYS_OBJECT_ID, SYS_SERVICES)

IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_TYPE = "1.3.6.1.2.1.2.2.1.3"
IF_PHYS_ADDRESS = "1.3.6.1.2.1.2.2.1.6"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
LLDP_REM = "1.0.8802.1.1.2.1.4.1.1"           # lldpRemEntry: .<column>.<timeMark>.<localPort>.<index>
LLDP_LOC_PORT_ID = "1.0.8802.1.1.2.1.3.7.1.3"  # .<localPort>
LLDP_LOC_PORT_DESC = "1.0.8802.1.1.2.1.3.7.1.4"
TABLES = (IF_DESCR, IF_TYPE, IF_PHYS_ADDRESS, IF_NAME, LLDP_REM, LLDP_LOC_PORT_ID, LLDP_LOC_PORT_DESC)

# lldpRemEntry columns.
_CHASSIS_SUBTYPE, _CHASSIS_ID, _PORT_SUBTYPE, _PORT_ID = 4, 5, 6, 7
_PORT_DESC, _SYS_NAME, _SYS_DESC = 8, 9, 10
_MAC_SUBTYPES = {"chassis": 4, "port": 3}      # macAddress in LldpChassisIdSubtype / LldpPortIdSubtype
_ADDRESS_SUBTYPE = {"chassis": 5, "port": 4}   # networkAddress: an IANA address family octet + address
_MAX_TEXT, _MAX_LONG = 255, 4096


def _text(value: Any, cap: int = _MAX_TEXT) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value is None:
        return None
    text = str(value).replace("\r", " ").replace("\n", " ").strip().strip("\0")
    return text[:cap] or None


def _mac(value: Any) -> str | None:
    if isinstance(value, bytes) and len(value) == 6 and any(value):
        return value.hex(":")
    return None


def _lldp_id(value: Any, subtype: Any, kind: str) -> str | None:
    """A chassis or port id as text: a MAC as a MAC, a network address as an address."""
    if subtype == _MAC_SUBTYPES[kind] and (mac := _mac(value)):
        return mac
    if subtype == _ADDRESS_SUBTYPE[kind] and isinstance(value, bytes) and len(value) in (5, 17):
        return str(ipaddress.ip_address(value[1:]))
    if isinstance(value, bytes) and value and not value.isascii():
        return value.hex(":")[:_MAX_TEXT]
    return _text(value)


def _rows(values: dict[str, Any], column: str) -> dict[str, Any]:
    """Index suffix -> value of one table column."""
    prefix = column + "."
    return {oid[len(prefix):]: v for oid, v in values.items() if oid.startswith(prefix)}


def system_of(values: dict[str, Any], *, max_rows: int = 64) -> SnmpSystem:
    services = values.get(SYS_SERVICES)
    oid = values.get(SYS_OBJECT_ID)
    names, descrs = _rows(values, IF_NAME), _rows(values, IF_DESCR)
    types, macs = _rows(values, IF_TYPE), _rows(values, IF_PHYS_ADDRESS)
    interfaces = []
    for index in sorted({*descrs, *names}, key=lambda i: int(i) if i.isdigit() else 0)[:max_rows]:
        if not index.isdigit():
            continue
        kind = types.get(index)
        name = _text(names.get(index)) or _text(descrs.get(index))
        interfaces.append(SnmpInterface(index=int(index), name=name, mac=_mac(macs.get(index)),
                                        type=kind if isinstance(kind, int) else None))
    return SnmpSystem(sys_name=_text(values.get(SYS_NAME)), sys_descr=_text(values.get(SYS_DESCR), _MAX_LONG),
                      sys_object_id=_text(oid) if isinstance(oid, str) else None,
                      sys_services=services if isinstance(services, int) else None,
                      interfaces=interfaces, neighbours=neighbours_of(values, max_rows=max_rows))


def neighbours_of(values: dict[str, Any], *, max_rows: int = 64) -> list[LldpNeighbour]:
    """lldpRemTable's rows, with our side's port named from lldpLocPortTable."""
    remote: dict[tuple[str, str], dict[int, Any]] = {}
    for suffix, value in _rows(values, LLDP_REM).items():
        parts = suffix.split(".")
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        column, _time_mark, local_port, index = parts
        remote.setdefault((local_port, index), {})[int(column)] = value
    port_ids, port_descs = _rows(values, LLDP_LOC_PORT_ID), _rows(values, LLDP_LOC_PORT_DESC)
    out = []
    def order(key: tuple[str, str]) -> tuple[int, str]:
        return (int(key[0]) if key[0].isdigit() else 0, key[1])

    for (local_port, _), row in sorted(remote.items(), key=lambda kv: order(kv[0]))[:max_rows]:
        local = _text(port_descs.get(local_port)) or _text(port_ids.get(local_port)) or local_port
        out.append(LldpNeighbour(
            local_port=local,
            chassis_id=_lldp_id(row.get(_CHASSIS_ID), row.get(_CHASSIS_SUBTYPE), "chassis"),
            port_id=_lldp_id(row.get(_PORT_ID), row.get(_PORT_SUBTYPE), "port"),
            port_description=_text(row.get(_PORT_DESC)), system_name=_text(row.get(_SYS_NAME)),
            system_description=_text(row.get(_SYS_DESC), _MAX_LONG)))
    return out
