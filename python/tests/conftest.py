"""Shared fixtures: the repository, and the command-line tool built as libquarry.so is (the plain
release build), so that the library's floats can be compared with the tool's for identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RELEASE_FLAGS = ["-c", "release"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def cli() -> str:
    """QUARRY_CLI, or the release tool of this repository (built here if missing: incremental
    after `pip install ./python`, which built every module it needs with the same flags)."""
    if os.environ.get("QUARRY_CLI"):
        return os.environ["QUARRY_CLI"]
    subprocess.run(["swift", "build", *RELEASE_FLAGS, "--product", "quarry"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run(["swift", "build", *RELEASE_FLAGS, "--show-bin-path"], cwd=REPO, check=True,
                         stdout=subprocess.PIPE, text=True)
    return str(Path(out.stdout.strip()) / "quarry")
