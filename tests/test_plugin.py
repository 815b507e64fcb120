"""twistd finds the mucauth plugin: here, and after a plain ``pip install`` into a fresh venv."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import cast

from twisted.application.service import IServiceMaker, ServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# What the wheel is built from: everything setup.cfg packages, nothing else of the checkout.
SOURCES = ("setup.cfg", "pyproject.toml", "README.rst", "mucauth", "twisted/plugins")


def clean_env() -> dict[str, str]:
    """No PYTHONPATH and no user site: only the interpreter's own paths count."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def run(*args: str | Path, cwd: Path, timeout: float = 60) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def can_build_wheels_here() -> bool:
    """setuptools builds wheels by itself from 70.1 on; before, only with the wheel package."""
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


class PluginTests(SynchronousTestCase):
    def test_plugin_is_found_in_process(self) -> None:
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("mucauth", makers)
        self.assertEqual(cast(ServiceMaker, makers["mucauth"]).module, "mucauth.tap")

    def test_twistd_help_lists_mucauth(self) -> None:
        out = run(VENV_BIN / "twistd", "--help", cwd=Path(tempfile.gettempdir()))
        self.assertRegex(out, r"(?m)^\s+mucauth\s+XEP-0045")


class FreshInstallTests(SynchronousTestCase):
    """A wheel of the checkout, installed into a new venv, is visible to twistd there.

    Quick and mostly offline: the wheel is built with this venv's setuptools when it can build
    wheels (otherwise pip fetches one for an isolated build); the new venv gets no pip of its
    own and installs nothing from an index; it reaches Twisted and the
    other dependencies through one path entry to this venv's site-packages. A path added that
    way does not run that directory's ``.pth`` files, so the editable install of the checkout
    stays invisible: only the wheel can provide ``mucauth`` and its plugin.
    """

    def test_pip_install_makes_twistd_list_mucauth(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="mucauth-install-"))
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)

        source = work / "src"
        for name in SOURCES:
            origin = REPO / name
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    source / name,
                    ignore=shutil.ignore_patterns("__pycache__", "dropin.cache", "*.pyc"),
                )
            else:
                source.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, source / name)

        wheels = work / "wheels"
        if can_build_wheels_here():
            how = ["--no-build-isolation", "--no-index"]
        else:  # pip fetches a current setuptools for an isolated build (a few seconds)
            how = []
        run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *how,
            "--wheel-dir",
            wheels,
            source,
            cwd=work,
        )
        [wheel] = wheels.glob("mucauth-*.whl")

        venv = work / "venv"
        run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
        python = venv / "bin" / "python"
        target = Path(
            run(
                python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work
            ).strip()
        )
        (target / "mucauth_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
        run(
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-warn-script-location",
            wheel,
            cwd=work,
        )

        # The plugin file landed next to the package, as twistd expects.
        self.assertTrue((target / "twisted" / "plugins" / "mucauth_plugin.py").is_file())
        self.assertFalse((target / "twisted" / "plugins" / "__init__.py").exists())
        where = run(python, "-c", "import mucauth; print(mucauth.__file__)", cwd=work)
        self.assertTrue(where.strip().startswith(str(target)), where)

        out = run(
            python,
            "-c",
            "import sys; from twisted.scripts.twistd import run; sys.exit(run())",
            "--help",
            cwd=work,
        )
        self.assertRegex(out, r"(?m)^\s+mucauth\s+XEP-0045")
