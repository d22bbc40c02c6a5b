"""The ``web:`` section of config.yaml (the dashboard's shared settings)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import msgspec

from lanscope.settings import PositiveFloat, PositiveInt, Problems, Secret, Section


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(Section):
    enabled: bool = True                   # `lanscope run` (every stage) serves the dashboard
    address: str = "127.0.0.1"             # another address requires token or password
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080   # 0: any free port
    token: Secret | None = None            # bearer token (API clients) and login secret
    password: Secret | None = None         # login form secret
    session_hours: PositiveFloat = 12.0    # a login cookie lasts this long
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50   # hosts per page
    feed_events: PositiveInt = 500         # recent events kept for the live feed page
    max_streams: PositiveInt = 200         # open live (server-sent events) connections at most

    def check(self) -> Problems:
        if not is_loopback(self.address) and not (self.token or self.password):
            yield "address", (f"{self.address} is not a loopback address: the dashboard shows your "
                              "network's hosts and services, so set web.token or web.password (or "
                              "web.password_file) and every request will need it")
