"""MAC vendor enricher (netaddr's bundled IEEE OUI data, no download; see README.md)."""

from .stage import Config, MacVendor, build, is_locally_administered

__all__ = ["Config", "MacVendor", "build", "is_locally_administered"]
