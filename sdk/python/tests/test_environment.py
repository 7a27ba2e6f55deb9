"""The tests do not depend on the caller's environment: every variable the SDK reads is one that
``conftest.sdk_environment`` clears or sets (no daemon needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness import SDK_VARIABLES_CLEARED, SDK_VARIABLES_SET

import firepit

SOURCE = Path(firepit.__file__).resolve().parent


def variables_the_sdk_reads() -> set[str]:
    names: set[str] = set()
    for path in SOURCE.glob("*.py"):
        names |= set(
            re.findall(r"""(?:env|environ)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']""", path.read_text())
        )
    return names


def test_every_variable_the_sdk_reads_is_cleared_or_set_for_each_test() -> None:
    read = variables_the_sdk_reads()
    assert {"FIREPIT_SOCKET", "FIREPIT_URL", "XDG_RUNTIME_DIR"} <= read, read  # the scan finds them
    assert read <= set(SDK_VARIABLES_CLEARED) | set(SDK_VARIABLES_SET)


def test_no_endpoint_variable_leaks_into_a_test() -> None:
    assert all(name not in os.environ for name in SDK_VARIABLES_CLEARED)
    endpoint = firepit.resolve_endpoint()
    assert endpoint.socket == Path(os.environ["XDG_RUNTIME_DIR"]) / "firepit" / "firepit.sock"
