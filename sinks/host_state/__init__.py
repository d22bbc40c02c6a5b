"""host_state: host records, change detection, history and the DuckDB store (the one writer)."""

from ._store import (
    HostStore,
    QueryParam,
    QueryRejected,
    QueryResult,
    StoreError,
    check_read_only,
    connect,
    run_query,
    unapplied_batches,
)
from .fold import TRACKED, HostBook, HostEntry, PresencePolicy
from .stage import Config, HostState

__all__ = ["TRACKED", "Config", "HostBook", "HostEntry", "HostState", "HostStore", "PresencePolicy",
           "QueryParam", "QueryRejected", "QueryResult", "StoreError", "check_read_only", "connect",
           "run_query", "unapplied_batches"]
