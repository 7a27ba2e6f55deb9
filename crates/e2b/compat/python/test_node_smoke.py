"""E2B's JavaScript SDK (unmodified, pinned in ``crates/e2b/compat/node``) against the same
endpoint: ``node --test`` runs the smoke script with E2B's settings pointing here.

``$FIREPIT_E2B_NODE_DIR`` is a directory holding the script and its installed packages
(``npm ci`` of that package, as ``scripts/test`` prepares it outside the repository); without it
the test is skipped, and ``scripts/test`` always sets it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def test_the_javascript_sdk_creates_runs_writes_reads_and_kills(daemon: object) -> None:
    directory = os.environ.get("FIREPIT_E2B_NODE_DIR")
    if not directory or not (Path(directory) / "node_modules" / "e2b").is_dir():
        pytest.skip("set FIREPIT_E2B_NODE_DIR to an `npm ci` of crates/e2b/compat/node")
    node = shutil.which("node")
    assert node, "node is not installed (scripts/setup installs it)"
    run = subprocess.run(
        [node, "--test", "smoke.test.mjs"],
        cwd=directory,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
