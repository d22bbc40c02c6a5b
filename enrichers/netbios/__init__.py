"""NetBIOS enricher: NBSTAT names and workgroups (see README.md)."""

from .stage import Config, NetBios, build

__all__ = ["Config", "NetBios", "build"]
