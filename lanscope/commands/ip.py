"""``lanscope ip ADDR|NET``: facts about an address or network (what IPy offers, on ipaddress)."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.net.special import overlaps_special, special
from lanscope.output import print_json, print_table

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("value", metavar="ADDR|NET", help="an address (10.0.0.1) or network (10.0.0.0/8)")
    parser.add_argument("--contains", metavar="X", help="is address or network X inside it?")
    parser.add_argument("--overlaps", metavar="NET", help="does it overlap network NET?")
    parser.add_argument("--json", action="store_true", help="JSON for machines")


def _network(text: str, what: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise UsageError(f"{what} {text!r}: not an IP address or network ({exc})") from None


def address_type(net: Network) -> str:
    """The IANA special-purpose registry's kind (private, benchmarking, documentation,
    loopback, multicast ...), else public; "mixed" for a network holding both."""
    entry = special(net)
    if entry is not None:
        return entry.kind
    return "mixed" if overlaps_special(net) else "public"


def _registry(net: Network) -> str | None:
    entry = special(net)
    return f"{entry.name} ({entry.rfc}, {entry.network})" if entry is not None else None


def facts(text: str) -> dict[str, Any]:
    net = _network(text, "ADDR|NET")
    is_net = "/" in text
    first = net.network_address
    value = int(ipaddress.ip_interface(text.strip()).ip) if is_net else int(first)
    bits = net.max_prefixlen
    out: dict[str, Any] = {
        "input": text, "version": net.version,
        "address": str(ipaddress.ip_address(value)),
        "type": address_type(net),
        "registry": _registry(net),
        "integer": value, "hex": f"0x{value:0{bits // 4}x}",
        "binary": ".".join(f"{(value >> s) & 255:08b}" for s in range(bits - 8, -1, -8)) if bits == 32
        else f"{value:0128b}",
        "reverse_pointer": ipaddress.ip_address(value).reverse_pointer,
    }
    if is_net:
        out.update({
            "network": str(net), "netmask": str(net.netmask), "hostmask": str(net.hostmask),
            "prefixlen": net.prefixlen, "addresses": net.num_addresses,
            "first": str(first), "last": str(net.broadcast_address),
        })
        if net.version == 4:
            out["broadcast"] = str(net.broadcast_address) if net.prefixlen < 31 else None
            hosts = net.num_addresses - 2 if net.prefixlen < 31 else net.num_addresses
            out["usable_hosts"] = hosts
    return out


def main(args: argparse.Namespace, config: Config) -> int:
    result = facts(args.value)
    net = _network(args.value, "ADDR|NET")
    if args.contains is not None:
        other = _network(args.contains, "--contains")
        result["contains"] = {"value": args.contains,
                              "result": other.version == net.version and other.subnet_of(net)}  # type: ignore[arg-type]
    if args.overlaps is not None:
        other = _network(args.overlaps, "--overlaps")
        result["overlaps"] = {"value": args.overlaps,
                              "result": other.version == net.version and other.overlaps(net)}
    if args.json:
        print_json(result)
    else:
        rows = [(k, v["result"] if isinstance(v, dict) else v) for k, v in result.items() if v is not None]
        print_table(["field", "value"], rows)
    exit_false = any(isinstance(v, dict) and not v["result"] for v in result.values())
    return 1 if exit_false else 0
