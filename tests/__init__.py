"""The test suite. Importing mucauth first installs its Wokkel compatibility shims, so a test
module that imports a Wokkel module before any of ours (run alone) still loads."""

import mucauth  # noqa: F401
