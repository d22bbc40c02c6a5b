"""Reverse DNS with dnspython's async resolver: the dns_names enricher's one I/O primitive."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

# (name or None, TTL seconds or None); raises TimeoutError when no server answered.
ReverseLookup = Callable[[str], Awaitable[tuple[str | None, int | None]]]


def make_resolver(servers: Sequence[str], timeout_ms: int) -> dns.asyncresolver.Resolver:
    """A resolver for ``servers`` (addresses; empty: /etc/resolv.conf) with one overall timeout."""
    if servers:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [str(ipaddress.ip_address(s)) for s in servers]
    else:
        resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout_ms / 1000
    resolver.timeout = timeout_ms / 1000
    resolver.cache = None                 # the enricher keeps its own TTL cache
    return resolver


def make_reverse_lookup(servers: Sequence[str], timeout_ms: int) -> ReverseLookup:
    resolver = make_resolver(servers, timeout_ms)

    async def reverse(ip: str) -> tuple[str | None, int | None]:
        try:
            answer = await resolver.resolve(dns.reversename.from_address(ip), "PTR")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None, None
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.LifetimeTimeout) as exc:
            raise TimeoutError(f"reverse DNS for {ip}: {exc}") from None
        names = sorted(str(r.target).rstrip(".") for r in answer)
        ttl = answer.rrset.ttl if answer.rrset is not None else None
        return (names[0][:255] if names else None), ttl

    return reverse
