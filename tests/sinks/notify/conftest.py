"""Fixtures of the notify tests: a real HTTP receiver."""

from tests.sinks.notify.receiver import receiver

__all__ = ["receiver"]
