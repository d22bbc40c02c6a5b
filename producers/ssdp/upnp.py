"""SSDP messages and UPnP device descriptions: what they say about a device. Pure.

``parse_message`` reads an SSDP datagram (a search response ``HTTP/1.1 200``
or a ``NOTIFY``); ``parse_description`` reads a device description XML with
defusedxml (no DTD, no entities: the XML is attacker input) into the root
device's friendlyName, manufacturer, model and every device type in it
(embedded devices too). Text is capped.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from defusedxml import ElementTree

_MAX_TEXT = 255
_MAX_DEVICES = 32
SEARCH = (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
          b"MX: 2\r\nST: ssdp:all\r\nUSER-AGENT: lanscope UPnP/1.1\r\n\r\n")


@dataclass(frozen=True)
class Message:
    kind: str                      # response | alive | byebye
    location: str | None
    target: str | None             # ST (responses) or NT (notifications)
    server: str | None


@dataclass(frozen=True)
class Description:
    friendly_name: str | None
    manufacturer: str | None
    model: str | None              # modelName, with modelNumber when it adds something
    device_types: tuple[str, ...]  # the root device's first, then embedded ones


def _cap(text: str | None) -> str | None:
    text = (text or "").strip()
    return text[:_MAX_TEXT] or None


def parse_message(data: bytes) -> Message | None:
    """An SSDP search response or notification; None for anything else (M-SEARCH included)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")    # never raises
    lines = head.split("\r\n")
    start = lines[0].upper()
    headers: dict[str, str] = {}
    for line in lines[1:40]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    if start.startswith("HTTP/1.") and " 200" in start:
        kind = "response"
        target = headers.get("st")
    elif start.startswith("NOTIFY "):
        kind = "byebye" if headers.get("nts", "").lower() == "ssdp:byebye" else "alive"
        target = headers.get("nt")
    else:
        return None
    return Message(kind, _cap(headers.get("location")), _cap(target), _cap(headers.get("server")))


def fetchable(location: str, sender: str) -> str | None:
    """Why a LOCATION may not be fetched, or None: only http(s) on the very address that
    sent the message (a device cannot send us to fetch from someone else)."""
    try:
        url = urlsplit(location)
        host = ipaddress.ip_address(url.hostname or "")
    except ValueError:
        return f"LOCATION {location!r} does not name an IP address"
    if url.scheme not in ("http", "https"):
        return f"LOCATION {location!r} is not http"
    if str(host) != sender:
        return f"LOCATION {location!r} is not on the sender {sender}"
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: object, name: str) -> str | None:
    for child in element:              # type: ignore[attr-defined]
        if _local(child.tag) == name:
            return _cap(child.text)
    return None


def parse_description(xml: bytes) -> Description:
    """The root device of a UPnP description; raises ValueError if it is not one."""
    try:
        root = ElementTree.fromstring(xml, forbid_dtd=True)
    except Exception as exc:           # defusedxml's refusals and XML syntax errors alike
        raise ValueError(f"not a UPnP description: {type(exc).__name__}: {exc}") from None
    devices = [e for e in root.iter() if _local(e.tag) == "device"]
    if not devices:
        raise ValueError("not a UPnP description: no <device>")
    top = devices[0]
    name, number = _child_text(top, "modelName"), _child_text(top, "modelNumber")
    model = name
    if name and number and number not in name:
        model = _cap(f"{name} {number}")
    types = [t for d in devices[:_MAX_DEVICES] if (t := _child_text(d, "deviceType"))]
    return Description(_child_text(top, "friendlyName"), _child_text(top, "manufacturer"), model or number,
                       tuple(dict.fromkeys(types)))
