"""Build backend of the quarry package: setuptools' own, with libquarry.so built first.

`pip install ./python` builds in place (pip >= 21.3), so the Swift package is the parent folder
of python/; QUARRY_SOURCE_ROOT names it otherwise. The library is built by
scripts/build-libquarry.sh (release, host-native vector width) and copied into quarry/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403  (every other hook as setuptools has it)

PACKAGE = Path(__file__).resolve().parent.parent


def _source_root() -> Path:
    root = Path(os.environ.get("QUARRY_SOURCE_ROOT", PACKAGE.parent)).resolve()
    if not (root / "Package.swift").is_file() or not (root / "scripts" / "build-libquarry.sh").is_file():
        raise RuntimeError(
            f"quarry: no Quarry Swift package at {root} (install with `python3 -m pip install ./python` "
            "from the repository root, or set QUARRY_SOURCE_ROOT)")
    return root


def _build_library() -> None:
    if os.environ.get("QUARRY_LIBRARY"):
        built = Path(os.environ["QUARRY_LIBRARY"])  # a library built beforehand, used as it is
    else:
        root = _source_root()
        out = subprocess.run(["bash", str(root / "scripts" / "build-libquarry.sh")], cwd=root,
                             stdout=subprocess.PIPE, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"quarry: building libquarry.so failed (exit {out.returncode}); "
                               "its output is above")
        built = Path(out.stdout.strip().splitlines()[-1])
    shutil.copyfile(built, PACKAGE / "quarry" / "libquarry.so")


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _build_library()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _build_library()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
