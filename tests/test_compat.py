import importlib

from twisted.trial.unittest import SynchronousTestCase

import mucauth  # noqa: F401  (installs the compat shim)


class WokkelImportTests(SynchronousTestCase):
    def test_wokkel_modules_import_on_current_twisted(self) -> None:
        for name in ("muc", "disco", "data_form", "ping", "component", "xmppim", "delay"):
            module = importlib.import_module(f"wokkel.{name}")
            self.assertEqual(module.__name__, f"wokkel.{name}")

    def test_muc_status_codes_available(self) -> None:
        from wokkel import muc

        self.assertEqual(muc.STATUS_CODE.SELF_PRESENCE.value, 110)
