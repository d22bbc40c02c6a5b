"""Neighbour table producer (kernel ARP/NDP entries via rtnetlink; see README.md)."""

from .stage import Config, Neighbours, build

__all__ = ["Config", "Neighbours", "build"]
