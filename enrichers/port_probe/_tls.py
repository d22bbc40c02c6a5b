"""TLS for banner grabbing: a client context that inventories rather than trusts, and certificate parsing."""

from __future__ import annotations

import hashlib
import ssl
import warnings
from datetime import datetime
from typing import Any

from schemas import TlsCert


def _tls_context() -> ssl.SSLContext:
    # Inventory, not trust: no verification, and old devices' ciphers and versions allowed.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
    except (ssl.SSLError, ValueError):
        pass
    return ctx


TLS = _tls_context()


def parse_certificate(der: bytes) -> TlsCert:
    """Subject, issuer, SANs, validity, self-signed, SHA-256 of a DER certificate.

    ``cryptography`` parses it: the stdlib only decodes certificates it verified.
    """
    sha = hashlib.sha256(der).hexdigest()
    try:
        from cryptography import x509
        from cryptography.x509.oid import ExtensionOID

        cert = x509.load_der_x509_certificate(der)
        sans: list[str] = []
        try:
            ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            san_value: Any = ext.value
            sans = [str(v) for v in san_value.get_values_for_type(x509.DNSName)]
            sans += [str(v) for v in san_value.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            pass
        subject = cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        not_before: datetime = cert.not_valid_before_utc
        not_after: datetime = cert.not_valid_after_utc
        return TlsCert(subject=subject[:4000], issuer=issuer[:4000], sans=[s[:255] for s in sans[:50]],
                       not_before=not_before, not_after=not_after,
                       self_signed=cert.subject == cert.issuer, sha256=sha)
    except Exception:  # a certificate is attacker-controlled: a bad one is recorded by hash only
        return TlsCert(sha256=sha)
