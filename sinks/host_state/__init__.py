"""host_state: host records, change detection, history and the DuckDB store (the one writer).

The store's names (``HostStore``, ``connect``, ``run_query`` ...) are imported
from ``_store`` on first use: DuckDB loads only when something touches the
database, not when config.yaml is read (``lanscope.config`` imports this
package for its ``Config``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .fold import TRACKED, HostBook, HostEntry, PresencePolicy
from .stage import Config, HostState, build, database_path

if TYPE_CHECKING:
    from ._store import (
        HostStore,
        QueryRejected,
        QueryResult,
        StoreError,
        check_read_only,
        connect,
        run_query,
        unapplied_batches,
    )

_STORE_NAMES = frozenset({"HostStore", "QueryRejected", "QueryResult", "StoreError", "check_read_only",
                          "connect", "run_query", "unapplied_batches"})


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        return getattr(importlib.import_module("._store", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TRACKED", "Config", "HostBook", "HostEntry", "HostState", "HostStore", "PresencePolicy",
           "QueryRejected", "QueryResult", "StoreError", "build", "check_read_only", "connect",
           "database_path", "run_query", "unapplied_batches"]
