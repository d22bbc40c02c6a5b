"""Ping sweep producer: raw ICMP echo plus TCP ping, and the seed's ping helpers (see README.md)."""

from .helpers import is_alive, ping
from .stage import Config, PingSweep

__all__ = ["Config", "PingSweep", "is_alive", "ping"]
