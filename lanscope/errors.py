"""Errors the CLI turns into one clear line and an exit code."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable


class LanscopeError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""

    exit_code = 1


class UsageError(LanscopeError):
    """Bad arguments or targets (exit code 2, like argparse)."""

    exit_code = 2


class ScopeError(UsageError):
    """A target outside the allowed scope; the message names the flag that allows it."""


class UnusableEvent(LanscopeError):
    """An event no retry can make usable (a field its stage cannot read): the runtime
    dead-letters it at once, with this message as the reason. ``event_ids``: the events
    at fault (the others of a sink's batch are written without them)."""

    def __init__(self, message: str, event_ids: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.event_ids = frozenset(event_ids)


class StartupError(LanscopeError):
    """`lanscope run` could not start (a stage already running on this data_dir, NATS, the
    store ...): one line, exit code 2."""

    exit_code = 2


class StorageUnavailable(LanscopeError):
    """A write failed for want of space (or on a read-only file system): no fault of the
    event, and retrying the same write succeeds once space returns. The runtime holds the
    messages (no ack, no dead letter) and retries with backoff; a stage may raise it, or let
    the OSError / database error through (``storage_problem`` recognises them)."""


# OS errors that say "no room to write", and how databases and NATS word them.
_NO_ROOM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_NO_ROOM_TEXTS = ("no space left on device", "disk quota exceeded", "read-only file system",
                  "insufficient storage resources", "insufficient resources")


def storage_problem(exc: BaseException) -> str | None:
    """What is wrong if ``exc`` (or what caused it) is a full disk, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return str(current)
        if isinstance(current, OSError) and current.errno in _NO_ROOM_ERRNOS:
            return f"{os.strerror(current.errno)}" + (f": {current.filename}" if current.filename else "")
        text = str(current)
        if any(words in text.lower() for words in _NO_ROOM_TEXTS):
            return " ".join(text.split())[:300]
        current = current.__cause__ or current.__context__
    return None
