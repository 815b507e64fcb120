"""Reading ``[muc_http_auth] ca_file``: one loader for the config check and the TLS context.

The config check promises that a file it accepts can be used. Checking only for a PEM marker let
a file whose certificate does not load pass, and start-up then died building the TLS context
with an OpenSSL traceback. Both places call :func:`load_ca_certificates`, so whatever the check
accepts, the context loads.
"""

from __future__ import annotations

import re

from OpenSSL import crypto
from twisted.internet import ssl

__all__ = ["CAFileError", "load_ca_certificates"]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class CAFileError(ValueError):
    """The CA file cannot be used; ``str()`` is the reason, naming the file (never its bytes)."""


def load_ca_certificates(path: str) -> list[ssl.Certificate]:
    """Every PEM certificate in the file at ``path``, in order; at least one.

    Raises :class:`CAFileError` when the file cannot be read, holds no certificate, or holds one
    that does not load. OpenSSL's own reasons ("nested asn1 error") are left out: the position
    of the certificate in the file says more to an operator.
    """
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise CAFileError(f"cannot read {path}: {e.strerror}") from None
    blocks = _PEM_CERT.findall(pem)
    if not blocks:
        raise CAFileError(f"{path} holds no PEM certificate")
    certificates = []
    for number, block in enumerate(blocks, start=1):
        try:
            certificates.append(ssl.Certificate.loadPEM(block))
        except (crypto.Error, ValueError):
            raise CAFileError(f"certificate {number} in {path} does not load") from None
    return certificates
