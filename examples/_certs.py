"""Throw-away self-signed certificates for HTTPS authorization services on loopback.

One generator for the in-process test server (``tests/support/http_server.py``), the example
auth service of the end-to-end tests (``tests/support/stack.py``) and the benchmark's HTTPS gate
(``bench/_driver.py``); tests reach it through ``tests.support.certs``. Every certificate is its
own CA, so it doubles as a ``ca_file``.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SelfSigned:
    """A self-signed certificate and its key, as PEM."""

    cert_pem: bytes
    key_pem: bytes

    def write(
        self, directory: Path, cert_name: str = "cert.pem", key_name: str = "key.pem"
    ) -> tuple[Path, Path]:
        """Write both files into ``directory`` (created if needed); returns (cert, key)."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / cert_name, directory / key_name
        cert_path.write_bytes(self.cert_pem)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path

    def server_options(self) -> Any:
        """A Twisted server context factory built from cryptography objects.

        Twisted's PrivateCertificate.options() hands pyOpenSSL X509/PKey objects to OpenSSL,
        which pyOpenSSL now deprecates.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from OpenSSL import SSL
        from twisted.internet.interfaces import IOpenSSLContextFactory
        from zope.interface import implementer

        cert = x509.load_pem_x509_certificate(self.cert_pem)
        key = load_pem_private_key(self.key_pem, password=None)

        @implementer(IOpenSSLContextFactory)
        class _ServerContext:
            def getContext(self) -> SSL.Context:
                ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
                ctx.use_certificate(cert)
                ctx.use_privatekey(key)  # type: ignore[arg-type]
                return ctx

        return _ServerContext()


def self_signed(
    common_name: str = "localhost", names: Sequence[str] = ("localhost", "127.0.0.1")
) -> SelfSigned:
    """A certificate for ``names`` (host names or IP addresses), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return SelfSigned(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
