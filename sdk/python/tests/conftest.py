"""Fixtures: one real ``firepit serve`` for the whole session (see ``harness.py``), clients of it,
and the asyncio backend for ``@pytest.mark.anyio`` tests.

The daemon needs the ``firepit`` binary (``--firepit-bin`` or ``$FIREPIT_BIN``) and a guest image
(``--firepit-image`` or ``$FIREPIT_IMAGE_DIR``); ``scripts/test`` passes both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import Daemon

import firepit


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("firepit")
    group.addoption(
        "--firepit-bin",
        default=os.environ.get("FIREPIT_BIN"),
        help="the `firepit` binary (default $FIREPIT_BIN)",
    )
    group.addoption(
        "--firepit-image",
        default=os.environ.get("FIREPIT_IMAGE_DIR"),
        help="the guest image directory (default $FIREPIT_IMAGE_DIR)",
    )


def _required_path(config: pytest.Config, option: str, what: str) -> Path:
    value = config.getoption(option)
    if not value:
        raise pytest.UsageError(f"the SDK tests run a real daemon: pass {option} ({what})")
    path = Path(value)
    if not path.exists():
        raise pytest.UsageError(f"{option}={path} does not exist ({what})")
    return path


@pytest.fixture(scope="session")
def daemon(pytestconfig: pytest.Config) -> Iterator[Daemon]:
    """One ``firepit serve`` (Unix socket + TCP with a token) for the session; stopped with
    SIGTERM at the end, which must exit 0 and leave nothing behind."""
    binary = _required_path(pytestconfig, "--firepit-bin", "the `firepit` binary, or $FIREPIT_BIN")
    image = _required_path(pytestconfig, "--firepit-image", "the guest image, or $FIREPIT_IMAGE_DIR")
    running = Daemon.create(binary.resolve(), image.resolve())
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(daemon: Daemon) -> Iterator[firepit.Client]:
    """A sync client of the daemon's Unix socket."""
    with firepit.Client(daemon.socket) as client:
        yield client


@pytest.fixture
async def aclient(daemon: Daemon) -> AsyncIterator[firepit.AsyncClient]:
    """An asyncio client of the daemon's Unix socket."""
    async with firepit.AsyncClient(daemon.socket) as client:
        yield client


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
