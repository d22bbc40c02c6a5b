"""lanscope: continuous LAN observation on NATS JetStream and DuckDB."""

__version__ = "0.1.0"
