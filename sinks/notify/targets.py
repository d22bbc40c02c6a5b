"""Where notifications go: the ``sinks.notify.targets`` entries, one kind each.

Each target is a name with exactly one of ``apprise``, ``webhook`` or ``mqtt``
under it. These are the settings only; the senders that use them (``_apprise``,
``_webhook``, ``_mqtt``) are imported when the stage is built. Secrets (an
Apprise or webhook URL with a token in it, the webhook's HMAC key, the MQTT
password) are ``Secret``: never shown, and readable from a file with
``<key>_file`` (``url_file``, ``secret_file``, ``password_file``).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from lanscope.settings import Port, PositiveFloat, PositiveInt, Problems, Secret, Section, TlsConfig


class AppriseTarget(Section):
    url: Secret | None = None                # required: an Apprise URL (https://appriseit.com/services/);
                                             # tokens in it: ${VAR} or url_file
    format: Literal["auto", "text", "markdown"] = "auto"   # auto: Markdown where the service takes it
    timeout_secs: PositiveFloat = 30.0

    def check(self) -> Problems:
        if not self.url:
            yield "url", "required (or url_file)"
        elif "://" not in str(self.url):
            yield "url", "is not an Apprise URL (scheme://...)"


class WebhookTarget(Section):
    url: Secret | None = None               # required; may carry a token (also url_file)
    secret: Secret | None = None            # HMAC-SHA256 key for Lanscope-Signature (also secret_file)
    cloudevents: bool = False               # CloudEvents binary mode (ce-* headers, ce-id = event id)
    headers: dict[str, Secret] = {}         # extra headers (an Authorization token ...)
    timeout_secs: PositiveFloat = 10.0
    tls: TlsConfig | None = None            # CA file or pinned fingerprint for https

    def check(self) -> Problems:
        if not self.url:
            yield "url", "required (or url_file)"
        elif urlsplit(str(self.url)).scheme not in ("http", "https"):
            yield "url", "must be an http:// or https:// URL"


class MqttTarget(Section):
    host: str = ""                          # required: the broker
    port: Port = 1883
    user: str | None = None
    password: Secret | None = None          # also password_file
    tls: TlsConfig | None = None            # set (even empty) for MQTT over TLS
    client_id: str = ""                     # empty: lanscope-notify-<target name>-<this host's name>
    topic_prefix: str = "lanscope"          # notifications, states, availability under it
    discovery: bool = True                  # Home Assistant MQTT discovery configs
    discovery_prefix: str = "homeassistant"
    trackers: Literal["all", "known", "none"] = "all"   # which hosts get a device_tracker
    keepalive_secs: PositiveInt = 60
    connect_timeout_secs: PositiveInt = 10  # a notification waits this long for the connection

    def check(self) -> Problems:
        if not self.host:
            yield "host", "required: the MQTT broker"
        for key in ("topic_prefix", "discovery_prefix"):
            value = getattr(self, key)
            if not value or any(c in value for c in "#+") or value.startswith("/"):
                yield key, f"{value!r} is not a topic prefix (no wildcards, no leading /)"


_KINDS = ("apprise", "webhook", "mqtt")


class Target(Section):
    """One named target: exactly one of its kinds."""

    apprise: AppriseTarget | None = None
    webhook: WebhookTarget | None = None
    mqtt: MqttTarget | None = None

    def check(self) -> Problems:
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            yield "", ("needs exactly one of apprise, webhook, mqtt" if not kinds
                       else f"has {' and '.join(kinds)}: one kind per target")


__all__ = ["AppriseTarget", "MqttTarget", "Target", "WebhookTarget"]
