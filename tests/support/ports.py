"""Free loopback ports for servers that tests start as subprocesses.

The helpers live in ``examples/_stack.py`` (the demo and the Prosody runner use them too).
"""

from examples._stack import free_port, wait_for_port

__all__ = ["free_port", "wait_for_port"]
