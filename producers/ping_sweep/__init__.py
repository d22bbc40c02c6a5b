"""Ping sweep producer: raw ICMP echo plus TCP ping, and the seed's ping helpers (see README.md)."""

from .helpers import is_alive, ping
from .stage import Config, PingSweep, build

__all__ = ["Config", "PingSweep", "build", "is_alive", "ping"]
