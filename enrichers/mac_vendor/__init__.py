"""MAC vendor enricher (netaddr's bundled IEEE OUI data, no download)."""

from .stage import Config, MacVendor, is_locally_administered

__all__ = ["Config", "MacVendor", "is_locally_administered"]
