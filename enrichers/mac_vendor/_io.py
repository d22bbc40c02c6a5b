"""MAC vendor lookup in netaddr's bundled IEEE OUI registry (no download, ever).

netaddr reads its packaged oui.txt through an index on every lookup (file
I/O), so results are cached per OUI and only misses go to a thread.
"""

from __future__ import annotations

import asyncio

import netaddr

_cache: dict[str, str | None] = {}
_MAX_CACHE = 65536


def oui_vendor(oui: str) -> str | None:
    """The organisation registered for a 24-bit OUI ("bc:24:11"), or None (blocking)."""
    if oui in _cache:
        return _cache[oui]
    try:
        vendor: str | None = str(netaddr.EUI(f"{oui}:00:00:00").oui.registration().org).strip() or None
    except (netaddr.NotRegisteredError, netaddr.AddrFormatError, IndexError):
        vendor = None
    if len(_cache) < _MAX_CACHE:
        _cache[oui] = vendor
    return vendor


async def oui_vendor_async(oui: str) -> str | None:
    if oui in _cache:
        return _cache[oui]
    return await asyncio.to_thread(oui_vendor, oui)
