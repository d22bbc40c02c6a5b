"""Sinks: stages that keep state (host records, DuckDB, findings, registry)."""
