"""TLS settings for lanscope's clients: MikroTik REST, Proxmox API and NATS.

Routers and hypervisors usually present a self-signed certificate. Besides
"verify against the system store", "verify against this CA file" and "verify
off", a user can pin the certificate's SHA-256 fingerprint. The pin is checked
inside the TLS handshake (a socket/SSLObject subclass on the context), so no
byte of the request — and no credential — is sent to a peer whose certificate
does not match. The same context works for httpx (sync and async) and for
requests/urllib3 (proxmoxer).
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from typing import Any

from lanscope.settings import TlsConfig

# What a `tls:` section of config.yaml says is what the clients take, as it is.
TlsSettings = TlsConfig


class FingerprintMismatch(ssl.SSLCertVerificationError):
    """The peer's certificate is not the pinned one."""


def normalize_fingerprint(value: str) -> str:
    """``"3F:0A:..."`` / ``"3f0a..."`` -> 64 lower-case hex digits; ValueError otherwise."""
    digits = value.strip().lower().replace(":", "").replace(" ", "")
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("fingerprint_sha256 must be 64 hex digits (colons allowed)")
    return digits


def _check_pin(ssl_conn: ssl.SSLSocket | ssl.SSLObject) -> None:
    expected: str = ssl_conn.context.pin_sha256  # type: ignore[attr-defined]
    der = ssl_conn.getpeercert(binary_form=True)
    if der is None:
        raise FingerprintMismatch("peer sent no certificate to compare with the pinned fingerprint")
    actual = hashlib.sha256(der).hexdigest()
    if not hmac.compare_digest(actual, expected):
        raise FingerprintMismatch(
            f"certificate fingerprint sha256 {_colons(actual)} does not match the pinned "
            f"{_colons(expected)}")


def _colons(digits: str) -> str:
    return ":".join(digits[i:i + 2] for i in range(0, len(digits), 2)).upper()


class _PinnedSocket(ssl.SSLSocket):
    """Blocking sockets (httpx sync, urllib3): check the pin right after the handshake."""

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        _check_pin(self)


class _PinnedObject(ssl.SSLObject):
    """Memory-BIO TLS (asyncio, anyio: httpx.AsyncClient): same check."""

    def do_handshake(self) -> None:
        super().do_handshake()
        _check_pin(self)


class PinnedContext(ssl.SSLContext):
    """A client context that accepts exactly one certificate, by SHA-256 fingerprint."""

    pin_sha256: str

    def __new__(cls, pin_sha256: str) -> PinnedContext:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.pin_sha256 = normalize_fingerprint(pin_sha256)
        return context

    def __init__(self, pin_sha256: str) -> None:
        # (ssl.SSLContext has no __init__ of its own to call.)
        # The pin replaces chain and name checks: a self-signed router certificate
        # rarely names the address it is reached at.
        self.check_hostname = False
        self.verify_mode = ssl.CERT_NONE
        self.minimum_version = ssl.TLSVersion.TLSv1_2
        self.sslsocket_class = _PinnedSocket
        self.sslobject_class = _PinnedObject


def ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """The client SSLContext for these settings (pin > CA file > verify flag)."""
    context: ssl.SSLContext
    if tls.fingerprint_sha256:
        context = PinnedContext(tls.fingerprint_sha256)
    else:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if not tls.verify and not tls.ca_file:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def describe(tls: TlsSettings) -> str:
    """How the peer is verified, for messages (never a secret)."""
    if tls.fingerprint_sha256:
        return "pinned certificate fingerprint"
    if tls.ca_file:
        return f"CA file {tls.ca_file}"
    return "system CA store" if tls.verify else "no verification"


def tls_error_text(exc: BaseException) -> str:
    """A short reason for a TLS failure found anywhere in an exception chain."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FingerprintMismatch):
            return str(current.args[0] if current.args else current)
        if isinstance(current, ssl.SSLCertVerificationError):
            return f"certificate verification failed: {current.verify_message or current.reason}"
        if isinstance(current, ssl.SSLError):
            return f"TLS error: {current.reason or current}"
        current = current.__cause__ or current.__context__
    return ""
