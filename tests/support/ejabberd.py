"""A throw-away ejabberd for the tests: the server runner lives in ``examples/_ejabberd.py``
because the demo (``examples/demo.py --server ejabberd``), which must not import the tests,
starts it too; this module is the name the tests use.

A test that needs ejabberd fails (never skips) with "run ./dev.sh test, which installs it" when
it is missing.
"""

from examples._ejabberd import COMPONENT_LOGIN, EjabberdError, EjabberdServer, require_ejabberd

__all__ = ["COMPONENT_LOGIN", "EjabberdError", "EjabberdServer", "require_ejabberd"]
