"""host_state: host records, change detection, history and the DuckDB store (the one writer).

The store's names (``HostStore``, ``connect``, ``run_query`` ...) are imported
from ``_store`` on first use: DuckDB loads only when something touches the
database, not when config.yaml is read (``lanscope.config`` imports this
package for its ``Config``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .fold import FACTS, OBSERVATIONS, HostBook
from .presence import PresenceConfig
from .records import HostEntry
from .stage import Config, HostState, QueryParam, build, database_path

if TYPE_CHECKING:
    from ._query import QueryRejected, QueryResult, check_read_only, run_query, unapplied_batches
    from ._schema import StoreError, connect
    from ._store import HostStore

# name -> the private module that defines it (each imports DuckDB)
_STORE_NAMES = {"HostStore": "._store", "QueryRejected": "._query", "QueryResult": "._query",
                "check_read_only": "._query", "run_query": "._query",
                "unapplied_batches": "._query", "StoreError": "._schema", "connect": "._schema"}


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        return getattr(importlib.import_module(_STORE_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FACTS", "OBSERVATIONS", "Config", "HostBook", "HostEntry", "HostState", "HostStore",
           "PresenceConfig", "QueryParam", "QueryRejected", "QueryResult", "StoreError", "build",
           "check_read_only", "connect", "database_path", "run_query", "unapplied_batches"]
