"""The SNMP enricher's one I/O primitive: GET and bulk walks with pysnmp (asyncio).

Numeric OIDs only, ``lookupMib=False``: no MIB is loaded or compiled, nothing is
read from disk or the network but the agent's answers. pysnmp's values become
plain Python values (bytes, int, OID text) for ``mib.system_of``. One
SnmpEngine per enricher; each question its own transport target.
"""

from __future__ import annotations

from typing import Any

from pyasn1.type.univ import ObjectIdentifier, OctetString
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_walk_cmd,
    get_cmd,
    usmAesCfb128Protocol,
    usmAesCfb256Protocol,
    usmDESPrivProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)

from .mib import SYSTEM, TABLES

# What V3User.auth_protocol / priv_protocol allow; without a key the protocol is "none".
_AUTH = {"md5": usmHMACMD5AuthProtocol, "sha": usmHMACSHAAuthProtocol,
         "sha256": usmHMAC192SHA256AuthProtocol, "sha512": usmHMAC384SHA512AuthProtocol}
_PRIV = {"des": usmDESPrivProtocol, "aes": usmAesCfb128Protocol, "aes256": usmAesCfb256Protocol}


def _value(value: Any) -> Any:
    if isinstance(value, OctetString):
        return bytes(value)
    if isinstance(value, ObjectIdentifier):
        return str(value)
    try:                       # Integer, Counter32, Gauge32, TimeTicks ...
        return int(value)
    except (TypeError, ValueError):
        return None            # noSuchObject, noSuchInstance, endOfMibView


class Agent:
    """Asks SNMP agents, with one credential (a v2c community or a v3 user)."""

    def __init__(self, *, community: str | None = None, user: str | None = None,
                 auth_protocol: str = "sha", auth_key: str | None = None, priv_protocol: str = "aes",
                 priv_key: str | None = None) -> None:
        self._engine = SnmpEngine()
        if user:
            auth = _AUTH[auth_protocol] if auth_key else usmNoAuthProtocol
            priv = _PRIV[priv_protocol] if priv_key else usmNoPrivProtocol
            self._auth: Any = UsmUserData(user, authKey=auth_key, privKey=priv_key, authProtocol=auth,
                                          privProtocol=priv)
        else:
            self._auth = CommunityData(community or "", mpModel=1)

    async def ask(self, ip: str, *, timeout_s: float, retries: int, max_rows: int) -> dict[str, Any] | None:
        """The system group and the tables (mib.TABLES) of the agent at ``ip``: OID text ->
        value; None when it does not answer (or refuses the credential)."""
        cls = Udp6TransportTarget if ":" in ip else UdpTransportTarget
        target = await cls.create((ip, 161), timeout=timeout_s, retries=retries)
        error, status, _, binds = await get_cmd(self._engine, self._auth, target, ContextData(),
                                                *[ObjectType(ObjectIdentity(o)) for o in SYSTEM],
                                                lookupMib=False)
        if error or status:
            return None
        values: dict[str, Any] = {str(oid): _value(v) for oid, v in binds}
        for column in TABLES:
            rows = 0
            async for error, status, _, binds in bulk_walk_cmd(
                    self._engine, self._auth, target, ContextData(), 0, 25,
                    ObjectType(ObjectIdentity(column)), lookupMib=False, lexicographicMode=False):
                if error or status:
                    break
                for oid, v in binds:
                    values[str(oid)] = _value(v)
                rows += len(binds)
                if rows >= max_rows * 8:      # lldpRemTable has 7 columns a row under one walk
                    break
        return values
