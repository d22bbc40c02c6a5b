"""The ``web:`` section of config.yaml (the dashboard's shared settings)."""

from __future__ import annotations

import msgspec

# Module import (not ``from``): lanscope.config imports this module while it loads, and the
# annotations below are resolved by msgspec on first use, when both modules are complete.
import lanscope.config as _config


class WebConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True                   # `lanscope run` (every stage) serves the dashboard
    address: str = "127.0.0.1"             # another address requires token or password
    port: int = 8080
    token: _config.Secret | None = None    # bearer token (API clients) and login secret
    password: _config.Secret | None = None  # login form secret
    session_hours: float = 12.0            # a login cookie lasts this long
    page_size: int = 50                    # hosts per page (the page may ask for up to 500)
    feed_events: int = 500                 # recent events kept for the live feed page
    max_streams: int = 200                 # open live (server-sent events) connections at most
