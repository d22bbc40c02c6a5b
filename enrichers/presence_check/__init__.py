"""presence_check: a direct ARP / ICMP / TCP check of a host before host_state says it is gone."""

from .stage import Config, PresenceCheck

__all__ = ["Config", "PresenceCheck"]
