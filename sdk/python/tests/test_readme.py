"""The README's Python examples work as written, against the real daemon (named by
``$FIREPIT_SOCKET``, as a user's environment would)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Daemon

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_examples() -> None:
    assert len(python_blocks()) == 6


@pytest.mark.parametrize("index", range(6))
def test_a_readme_example_runs(index: int, daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / f"example_{index}.py"
    script.write_text(python_blocks()[index])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREPIT_")}
    env["FIREPIT_SOCKET"] = str(daemon.socket)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = [
        [r"^3 hello from \S+\n", r"^b'\\x00\\xff'\n", r"^\d+\n"],
        [r"^\['0', '1', '2'\]\n"],
        [r"^stdout working\nstderr done\nexit 0\n", r"^0o755 1\n"],
        [r"^ExitStatus\(exit_code=0, ", r"^b'tick 2\\ntick 3\\n' 21\n", r"^b'40 120' 3\n"],
        [r"^hello\n"],
        [r"^(no VM ready; retry in 1.0 s|exec_refused 422)\n"],
    ][index]
    for pattern in expected:
        assert re.search(pattern, done.stdout, flags=re.MULTILINE), done.stdout
