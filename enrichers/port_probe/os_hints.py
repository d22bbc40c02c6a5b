"""OS hints: banners, the TTL of replies and the TCP window of SYN-ACKs, combined with a confidence.

A banner that names a distribution ("OpenSSH_9.2p1 Debian-2+deb12u3") is the
strongest evidence; the TTL family (initial 64: Linux/Unix, 128: Windows, 255:
network gear) and the SYN-ACK window are weak on their own, and mostly raise
or lower the confidence of what the banners said.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from schemas import OsGuess


@dataclass(frozen=True)
class BannerHint:
    name: str
    family: str | None
    confidence: int
    evidence: str


def initial_ttl(ttl: int) -> int:
    """The initial TTL a reply most likely left with (32, 64, 128 or 255)."""
    for start in (32, 64, 128):
        if ttl <= start:
            return start
    return 255


_TTL_FAMILY = {32: ("Windows 9x or embedded", "embedded"), 64: ("Linux/Unix", "linux"),
               128: ("Windows", "windows"), 255: ("Network device (Cisco IOS, Solaris ...)", "network")}
# Typical SYN-ACK windows: Linux scales from 64240/65160 (MSS 1460) or 29200/14600 on older kernels.
_LINUX_WINDOWS = {5720, 5792, 14480, 14600, 28960, 29200, 43440, 64240, 65160, 65483, 65495}
_WINDOWS_WINDOWS = {8192, 64240, 65535, 16384}
_BSD_WINDOWS = {65535, 65228}


def guess_os(banner_hints: Iterable[BannerHint], ttls: Iterable[int] = (),
             windows: Iterable[int] = ()) -> OsGuess | None:
    """The best OS guess for one host, or None when there is no evidence at all."""
    hints = sorted(banner_hints, key=lambda h: -h.confidence)
    ttl_list = [t for t in ttls if t]
    window_list = [w for w in windows if w]
    ttl_start = Counter(initial_ttl(t) for t in ttl_list).most_common(1)[0][0] if ttl_list else None
    window = Counter(window_list).most_common(1)[0][0] if window_list else None
    evidence: list[str] = []
    if ttl_start is not None:
        evidence.append(f"ttl={max(ttl_list)} (initial {ttl_start})")
    if window is not None:
        evidence.append(f"syn-ack window={window}")

    if hints:
        best = hints[0]
        confidence = best.confidence
        # Agreement of independent banners (ssh and http both say Debian) adds a little.
        if any(h.name == best.name and h.evidence != best.evidence for h in hints[1:]):
            confidence += 1
        if ttl_start is not None and best.family:
            ttl_family = _TTL_FAMILY[ttl_start][1]
            unix_like = ttl_family == "linux" and best.family in ("bsd", "unix", "macos")
            if ttl_family == best.family or unix_like:
                confidence += 1
            elif ttl_family in ("linux", "windows") and best.family in ("linux", "windows"):
                confidence -= 3              # a Windows banner on a TTL-64 host: a proxy or a port forward
        return OsGuess(name=best.name[:255], family=best.family, confidence=max(0, min(10, confidence)),
                       evidence=[h.evidence[:255] for h in hints[:3]] + evidence)

    if ttl_start is None:
        return None
    name, family = _TTL_FAMILY[ttl_start]
    confidence = 3
    if window is not None:
        if family == "linux" and window in _LINUX_WINDOWS:
            name, confidence = "Linux", 4
        elif family == "linux" and window in _BSD_WINDOWS:
            name, family, confidence = "FreeBSD/macOS", "bsd", 3
        elif family == "windows" and window in _WINDOWS_WINDOWS:
            confidence = 4
    return OsGuess(name=name, family=family, confidence=confidence, evidence=evidence)
