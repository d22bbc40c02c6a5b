"""SNMP enricher: system group, interfaces and LLDP neighbours (see README.md)."""

from .stage import Config, Snmp, V3User, build

__all__ = ["Config", "Snmp", "V3User", "build"]
