"""mucauth: an XEP-0045 Multi-User Chat component whose rooms ask an HTTP service who may enter."""

from mucauth import _compat

_compat.install()

__version__ = "0.1.0"
