"""Self-signed certificates for the fake HTTPS servers (generated per test, never shipped).

Uses the ``cryptography`` package (a dev dependency): real X.509 certificates
the client verifies with a CA file or pins by SHA-256 fingerprint.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SelfSigned:
    cert_file: Path
    key_file: Path
    sha256: str            # colon-separated upper-case hex, as RouterOS/Proxmox show it

    @property
    def sha256_hex(self) -> str:
        return self.sha256.replace(":", "").lower()


def self_signed(directory: Path, name: str = "router", *, hosts: tuple[str, ...] = ("127.0.0.1",
                "localhost")) -> SelfSigned:
    """Write ``<name>.pem`` / ``<name>-key.pem``: a self-signed cert valid for ``hosts``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / f"{name}.pem"
    key_file = directory / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return SelfSigned(cert_file, key_file, ":".join(digest[i:i + 2] for i in range(0, 64, 2)))
