"""The hosts people know: the registry's inventory file, read for notify's filters.

A host is in the inventory when its MAC, one of its IPs or its short hostname is
an entry's ``mac``, ``ip``/``internal_ip`` or ``hostname``; the entry's ``tags``
are the host's tags. The file is read at start and again when it changes
(checked at most every ``RECHECK_SECS``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sinks._inventory import short_name

from . import _io
from .model import HostFacts

log = logging.getLogger(__name__)
RECHECK_SECS = 30.0


class Inventory:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mtime: float | None = None
        self._checked = 0.0
        self._by: dict[str, frozenset[str]] = {}    # "mac:..", "ip:..", "name:.." -> tags

    async def refresh(self, *, force: bool = False) -> None:
        """Read the file again if it changed (an unreadable file keeps the last good one)."""
        if self.path is None or (not force and time.monotonic() - self._checked < RECHECK_SECS):
            return
        self._checked = time.monotonic()
        mtime = await _io.mtime(self.path)
        if mtime == self._mtime and not force:
            return
        try:
            rows = await _io.read_inventory(self.path) if mtime is not None else []
        except _io.InventoryError as exc:
            if force:
                raise
            log.error("notify: %s; keeping the inventory read before", exc)
            return
        self._mtime = mtime
        index: dict[str, frozenset[str]] = {}
        for row in rows:
            tags = frozenset(str(t) for t in row.get("tags") or ())
            for key in (f"mac:{str(row.get('mac') or '').lower()}", f"ip:{row.get('ip') or ''}",
                        f"ip:{row.get('internal_ip') or ''}", f"name:{short_name(row.get('hostname'))}"):
                if not key.endswith(":"):
                    index[key] = index.get(key, frozenset()) | tags
        self._by = index
        log.info("notify: inventory %s: %d entries", self.path, len(rows))

    def _keys(self, host: HostFacts) -> list[str]:
        keys = [f"mac:{host.mac}", f"ip:{host.ip}", f"name:{short_name(host.hostname)}"]
        return [k for k in keys if not k.endswith((":", ":None"))]

    def has(self, host: HostFacts) -> bool:
        return any(k in self._by for k in self._keys(host))

    def tags(self, host: HostFacts | None) -> frozenset[str]:
        if host is None:
            return frozenset()
        found: frozenset[str] = frozenset()
        for key in self._keys(host):
            found |= self._by.get(key, frozenset())
        return found
