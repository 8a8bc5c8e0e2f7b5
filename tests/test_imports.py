"""Every gocram module imports first, in a fresh interpreter state: no import-order cycles."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# One subprocess for all modules (torch is imported once); before each module every gocram.*
# entry is dropped from sys.modules, so the module is imported as if it were the first one.
SCRIPT = r"""
import importlib, pkgutil, sys
import gocram

names = sorted(m.name for m in pkgutil.walk_packages(gocram.__path__, "gocram.")
               if not m.name.endswith("__main__"))  # __main__ runs the CLI
failed = []
for name in names:
    for loaded in [m for m in sys.modules if m == "gocram" or m.startswith("gocram.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as err:
        failed.append(f"{name}: {type(err).__name__}: {err}")
print(len(names), "modules")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split()[0]) > 50
