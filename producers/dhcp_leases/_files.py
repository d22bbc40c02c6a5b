"""Reading lease files: the file I/O primitive of the dhcp_leases producer.

Paths may be globs. Every poll re-opens by path (dhcpd and Kea replace their
files atomically). A missing or unreadable file is a warning logged once per
path — not once per poll — and never an exception (the missing paths of one poll
share one line); when it becomes readable again that is logged once too. All blocking work runs in one
``asyncio.to_thread`` call per poll.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 32 * 1024 * 1024
# Kea's LFC leaves these beside the live file; they are read with it, in order, never alone.
_KEA_ROTATED = re.compile(r"\.csv\.(?:1|2|completed|output)$")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class FileText:
    path: str
    text: str
    mtime: datetime


class LeaseFileReader:
    """``await reader.read()`` -> the text of every readable lease file, in configured order."""

    def __init__(self, patterns: list[str], *, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.patterns = list(patterns)
        self.max_bytes = max_bytes
        self._warned: set[str] = set()
        self._missing: list[str] = []
        # Of the last read, for callers that named the files themselves (`lanscope leases
        # --file`): the patterns that named no file, and the files that could not be read.
        self.unmatched: list[str] = []
        self.unreadable: list[str] = []

    async def read(self) -> list[FileText]:
        return await asyncio.to_thread(self._read_all)

    def _read_all(self) -> list[FileText]:
        found: list[FileText] = []
        seen: set[str] = set()
        self._missing = []
        self.unmatched, self.unreadable = [], []
        for pattern in self.patterns:
            if _GLOB_CHARS.search(pattern):
                # A glob that matches nothing is normal (no such client on this machine).
                paths = sorted(p for p in glob.glob(pattern) if not _KEA_ROTATED.search(p))
                if not paths:
                    self.unmatched.append(pattern)
            else:
                paths = [pattern]
            for path in paths:
                if path in seen or os.path.isdir(path):
                    continue
                seen.add(path)
                text = self._read_one(path)
                if text is not None:
                    found.append(text)
        # The default list names every distribution's location, so most are missing on
        # any one machine: one line for all of them, once, not a line per path.
        new_missing = [p for p in self._missing if p not in self._warned]
        if new_missing:
            self._warned.update(new_missing)
            log.warning("lease files not found (skipped): %s", ", ".join(new_missing))
        return found

    def _read_one(self, path: str) -> FileText | None:
        try:
            parts = [self._read_text(p) for p in _kea_rotation(path)]
            text = self._read_text(path)
            mtime = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
        except FileNotFoundError:
            self._missing.append(path)
            self.unmatched.append(path)
            return None
        except OSError as exc:
            self._warn_once(path, f"cannot read lease file: {exc.strerror or exc}")
            self.unreadable.append(f"{path}: {exc.strerror or exc}")
            return None
        if path in self._warned:
            self._warned.discard(path)
            log.info("lease file %s is readable again", path)
        return FileText(path, "\n".join([*parts, text]), mtime)

    def _read_text(self, path: str) -> str:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > self.max_bytes:
                # Log-structured files keep the newest entries at the end: read the tail.
                handle.seek(size - self.max_bytes)
                data = handle.read(self.max_bytes)
                data = data[data.find(b"\n") + 1:]
                self._warn_once(f"{path}#size", f"lease file {path} is larger than "
                                f"{self.max_bytes} bytes; reading only its end")
            else:
                data = handle.read()
        return data.decode("utf-8", "replace")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: %s", message, key.removesuffix("#size"))


def _kea_rotation(path: str) -> list[str]:
    """Kea LFC files to read before the live one: .completed if present, else .1 then .2."""
    if not path.endswith(".csv"):
        return []
    completed = f"{path}.completed"
    if os.path.exists(completed):
        return [completed]
    return [p for p in (f"{path}.1", f"{path}.2") if os.path.exists(p)]
