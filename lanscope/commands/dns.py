"""``lanscope dns NAME [TYPE] [--server IP]``: one DNS query, printed like dig (or --json).

An address given as NAME with type PTR (the default for an address) is turned
into its reverse name. The server is --server, else the first of
``dns.servers``, else the system resolver's first nameserver. UDP, with a
TCP retry when the answer is truncated.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import time
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_json, print_line

TYPES = ("A", "AAAA", "NS", "MX", "CNAME", "TXT", "PTR", "SOA", "SRV", "ANY")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="a name, or an address for a PTR lookup")
    parser.add_argument("type", nargs="?", metavar="TYPE", type=str.upper,
                        help=f"record type: {'|'.join(TYPES)} (default A, PTR for an address)")
    parser.add_argument("--server", "-s", metavar="IP", help="DNS server to ask")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--timeout-ms", type=int, help="default: dns.timeout_ms")
    parser.add_argument("--json", action="store_true", help="JSON for machines")


def _query_name(name: str, rdtype: str | None) -> tuple[dns.name.Name, str]:
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None and rdtype in (None, "PTR"):
        return dns.reversename.from_address(str(address)), "PTR"
    try:
        return dns.name.from_text(name), rdtype or "A"
    except dns.exception.DNSException as exc:
        raise UsageError(f"NAME {name!r}: {exc}") from None


def _server(args: argparse.Namespace, config: Config) -> str:
    server = args.server or (config.dns.servers[0] if config.dns.servers else None)
    if server is None:
        try:
            server = str(dns.resolver.Resolver().nameservers[0])
        except (dns.resolver.NoResolverConfiguration, IndexError):
            raise UsageError("no DNS server configured; pass --server IP") from None
    try:
        return str(ipaddress.ip_address(server))
    except ValueError:
        raise UsageError(f"--server {server!r}: not an IP address") from None


async def query(name: dns.name.Name, rdtype: str, server: str, port: int,
                timeout_secs: float) -> tuple[dns.message.Message, float, str]:
    request = dns.message.make_query(name, rdtype)
    start = time.monotonic()
    response = await dns.asyncquery.udp(request, server, timeout=timeout_secs, port=port)
    protocol = "UDP"
    if response.flags & dns.flags.TC:
        response = await dns.asyncquery.tcp(request, server, timeout=timeout_secs, port=port)
        protocol = "TCP"
    return response, (time.monotonic() - start) * 1000, protocol


def main(args: argparse.Namespace, config: Config) -> int:
    if args.type is not None and args.type not in TYPES:
        raise UsageError(f"TYPE {args.type!r}: one of {', '.join(TYPES)}")
    qname, rdtype = _query_name(args.name, args.type)
    server = _server(args, config)
    timeout = (args.timeout_ms or config.dns.timeout_ms) / 1000
    try:
        response, elapsed_ms, protocol = asyncio.run(query(qname, rdtype, server, args.port, timeout))
    except dns.exception.Timeout:
        raise LanscopeError(f"no answer from {server}#{args.port} within {timeout:g} s") from None
    except OSError as exc:
        raise LanscopeError(f"cannot query {server}#{args.port}: {exc.strerror or exc}") from None
    status = dns.rcode.to_text(response.rcode())
    sections = {"answer": response.answer, "authority": response.authority,
                "additional": response.additional}
    if args.json:
        result: dict[str, Any] = {
            "question": {"name": qname.to_text(), "type": rdtype}, "status": status,
            "server": server, "port": args.port, "protocol": protocol,
            "query_time_ms": round(elapsed_ms, 3),
            "flags": dns.flags.to_text(response.flags).split(),
        }
        for key, rrsets in sections.items():
            result[key] = [{"name": rr.name.to_text(), "ttl": rr.ttl,
                            "class": "IN", "type": dns.rdatatype.to_text(rr.rdtype),
                            "data": rd.to_text()} for rr in rrsets for rd in rr]
        print_json(result)
    else:
        lines = [f";; ->>HEADER<<- status: {status}, flags: {dns.flags.to_text(response.flags).lower()}",
                 "", ";; QUESTION SECTION:", f";{qname.to_text()}\t\tIN\t{rdtype}"]
        for key, rrsets in sections.items():
            if rrsets:
                lines += ["", f";; {key.upper()} SECTION:"]
                lines += [line for rr in rrsets for line in rr.to_text().splitlines()]
        lines += ["", f";; Query time: {elapsed_ms:.1f} msec",
                  f";; SERVER: {server}#{args.port}({protocol})"]
        for line in lines:
            print_line(line)
    return 0 if status == "NOERROR" else 1
