"""host_state: host records, change detection, history and the DuckDB store (the one writer)."""

from ._query import QueryRejected, QueryResult, check_read_only, run_query, unapplied_batches
from ._schema import StoreError, connect
from ._store import HostStore
from .fold import FACTS, OBSERVATIONS, HostBook
from .presence import PresencePolicy
from .records import HostEntry
from .stage import Config, HostState

__all__ = ["FACTS", "OBSERVATIONS", "Config", "HostBook", "HostEntry", "HostState", "HostStore",
           "PresencePolicy", "QueryRejected", "QueryResult", "StoreError", "check_read_only", "connect",
           "run_query", "unapplied_batches"]
