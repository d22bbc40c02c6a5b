"""Reverse DNS enricher (dnspython's async resolver, TTL cache; see README.md)."""

from .stage import Config, DnsNames, build

__all__ = ["Config", "DnsNames", "build"]
