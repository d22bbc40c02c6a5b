"""Neighbour table producer (kernel ARP/NDP entries via rtnetlink; see README.md)."""

from .stage import Config, Neighbours

__all__ = ["Config", "Neighbours"]
