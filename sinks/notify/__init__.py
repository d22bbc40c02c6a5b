"""notify: host changes and findings as notifications (Apprise, webhooks, MQTT / Home Assistant)."""

from .stage import Config, Notify, build, kinds_of, make_sender

__all__ = ["Config", "Notify", "build", "kinds_of", "make_sender"]
