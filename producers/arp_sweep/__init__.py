"""ARP sweep producer: raw AF_PACKET requests to the attached subnets (see README.md)."""

from .stage import ArpSweep, Config, build

__all__ = ["ArpSweep", "Config", "build"]
