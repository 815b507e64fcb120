"""Make Wokkel 18.0.0, still its newest release, import on current Twisted.

Wokkel imports two names that Twisted has since removed:

- ``twisted.python.constants`` (``wokkel.muc``, ``wokkel.pubsub``): the module moved out of Twisted
  into the ``constantly`` package, which Twisted itself depends on, with the same API.
- ``twisted.python.compat._PY3`` (``wokkel.data_form``, hence ``disco`` and ``ping``): a flag
  that is always true on the Pythons we support.

``install`` must run before the first ``wokkel`` import; ``mucauth/__init__.py`` calls it, so any
``import mucauth...`` is enough. Nothing of Wokkel is copied or patched beyond these two names.
"""

import sys

import constantly
import twisted.python.compat


def install() -> None:
    sys.modules.setdefault("twisted.python.constants", constantly)
    if not hasattr(twisted.python.compat, "_PY3"):
        twisted.python.compat._PY3 = True  # type: ignore[attr-defined]
