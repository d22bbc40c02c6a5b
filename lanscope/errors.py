"""Errors the CLI turns into one clear line and an exit code."""

from __future__ import annotations

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
