"""Reverse DNS with dnspython's async resolver: the dns_names enricher's one I/O primitive.

``make_forward_lookup`` is its forward twin for the commands' hostname targets, so a
name is looked up at the same ``dns.servers`` the enricher asks for names."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

# (name or None, TTL seconds or None); raises TimeoutError when no server answered.
ReverseLookup = Callable[[str], Awaitable[tuple[str | None, int | None]]]


R = TypeVar("R", dns.resolver.Resolver, dns.asyncresolver.Resolver)


def _configured(kind: type[R], servers: Sequence[str], timeout_ms: int) -> R:
    """A ``kind`` resolver for ``servers`` (addresses; empty: /etc/resolv.conf), one overall timeout."""
    if servers:
        resolver = kind(configure=False)
        resolver.nameservers = [str(ipaddress.ip_address(s)) for s in servers]
    else:
        resolver = kind()
    resolver.lifetime = timeout_ms / 1000
    resolver.timeout = timeout_ms / 1000
    resolver.cache = None                 # the enricher keeps its own TTL cache
    return resolver


def make_resolver(servers: Sequence[str], timeout_ms: int) -> dns.asyncresolver.Resolver:
    """An async resolver for ``servers`` (addresses; empty: /etc/resolv.conf)."""
    return _configured(dns.asyncresolver.Resolver, servers, timeout_ms)


def make_forward_lookup(servers: Sequence[str], timeout_ms: int) -> Callable[[str], list[str]]:
    """``name -> addresses`` (A, then AAAA) asked of ``servers``, blocking, for target parsing.
    Raises OSError naming the servers when they do not answer; an unknown name has no address."""
    resolver = _configured(dns.resolver.Resolver, servers, timeout_ms)

    def forward(name: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = resolver.resolve(name, rdtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
                raise OSError(f"no answer from dns.servers {', '.join(servers)} ({exc})") from None
            found += [r.to_text() for r in answer]
        if not found:
            raise OSError(f"no such name at dns.servers {', '.join(servers)}")
        return found

    return forward


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
