"""Reverse DNS enricher (dnspython's async resolver, TTL cache)."""

from .stage import Config, DnsNames

__all__ = ["Config", "DnsNames"]
