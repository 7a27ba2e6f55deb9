"""Fixtures: one real ``firepit serve`` with its E2B endpoint for the whole session, E2B's SDK
pointed at it through E2B's own settings (``E2B_API_URL``, ``E2B_SANDBOX_URL``, ``E2B_DOMAIN``,
``E2B_API_KEY``: never the internet), and one sandbox shared by the tests that only need *a*
sandbox.

The daemon is firepit's SDK test harness (``sdk/python/tests/harness.py``) with this suite's
config: a shape ``base`` on the ``e2b-base`` image (``firepit image build --preset e2b-base``).
Needs the ``firepit`` binary (``$FIREPIT_BIN``) and the guest image (``$FIREPIT_IMAGE_DIR``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "sdk" / "python" / "tests"))

from harness import Daemon, _toml_str, free_tcp_port  # noqa: E402

from e2b import Sandbox  # noqa: E402


@dataclass
class E2bDaemon(Daemon):
    """``firepit serve`` with an ``[e2b]`` listener and a ``base`` template."""

    e2b_port: int = field(default_factory=free_tcp_port)

    @property
    def e2b_url(self) -> str:
        return f"http://127.0.0.1:{self.e2b_port}"

    def rest(self) -> httpx.Client:
        """E2B's REST API with the API key, for what the SDK does not send (raw bodies, statuses)."""
        return httpx.Client(base_url=self.e2b_url, headers={"X-API-Key": self.token}, timeout=120)

    def config(self) -> str:
        return f"""
state_dir = {_toml_str(self.dir / "state")}

[listen]
socket = {_toml_str(self.socket)}
tcp = {_toml_str(self.url.removeprefix("http://"))}
token_env = "FIREPIT_SDK_TEST_TOKEN"

[e2b]
listen = "127.0.0.1:{self.e2b_port}"

[limits]
parallel_fills = 2

[leases]
default_ttl_secs = 300
max_ttl_secs = 3600

[shutdown]
budget_secs = 10

[usage]
interval_ms = 1000

[snapshots]
template_dir = {_toml_str(self.dir / "templates")}
keep_templates = false

[[shape]]
name = "base"
image = "e2b-base"
memory_mb = 512
warm_up_argv = ["/bin/bash", "-lc", "true"]
depth = {{ low = 2, high = 3 }}
fill = "snapshot"
"""


def _path(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value or not Path(value).exists():
        raise pytest.UsageError(f"the E2B compatibility tests run a real daemon: set ${variable} ({what})")
    return Path(value).resolve()


@pytest.fixture(scope="session")
def daemon() -> Iterator[E2bDaemon]:
    running = E2bDaemon.create(_path("FIREPIT_BIN", "the firepit binary"), _path("FIREPIT_IMAGE_DIR", "the guest image"))
    try:
        running.start()
        os.environ.update(
            E2B_API_KEY=running.token,
            E2B_API_URL=running.e2b_url,
            E2B_SANDBOX_URL=running.e2b_url,
            E2B_DOMAIN="e2b.local",
        )
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def sandbox(daemon: E2bDaemon) -> Iterator[Sandbox]:
    """One sandbox for the tests that only need a sandbox (each uses its own paths and processes)."""
    sbx = Sandbox.create(timeout=600)
    try:
        yield sbx
    finally:
        sbx.kill()
