"""Errors the CLI turns into one clear line and an exit code."""

from __future__ import annotations


class LanscopeError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""

    exit_code = 1


class UsageError(LanscopeError):
    """Bad arguments or targets (exit code 2, like argparse)."""

    exit_code = 2


class ScopeError(UsageError):
    """A target outside the allowed scope; the message names the flag that allows it."""
