"""Throw-away self-signed certificates: the generator lives in ``examples/_certs.py`` (the
benchmark uses it too, and ``bench/`` does not import ``tests``)."""

from examples._certs import SelfSigned, self_signed

__all__ = ["SelfSigned", "self_signed"]
