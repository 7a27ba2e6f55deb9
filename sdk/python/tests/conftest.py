"""Fixtures: one real ``firepit serve`` for the whole session (see ``harness.py``), clients of it,
the asyncio backend for ``@pytest.mark.anyio`` tests, and an environment of the tests' own.

Every variable the SDK reads is cleared or set for each test (:func:`sdk_environment`), so a
``FIREPIT_SOCKET`` or ``FIREPIT_URL`` in the caller's shell (as after ``firepit serve``) changes
nothing; ``test_environment.py`` checks that the list covers what the SDK reads.

The daemon needs the ``firepit`` binary (``--firepit-bin`` or ``$FIREPIT_BIN``) and a guest image
(``--firepit-image`` or ``$FIREPIT_IMAGE_DIR``); ``scripts/test`` passes both.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from harness import SDK_VARIABLES_CLEARED, Daemon

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


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty ``$XDG_RUNTIME_DIR`` for the tests: no daemon listens at its default socket."""
    return tmp_path_factory.mktemp("xdg-runtime")


@pytest.fixture(autouse=True)
def sdk_environment(monkeypatch: pytest.MonkeyPatch, runtime_dir: Path) -> None:
    """Clears or sets every variable the SDK reads, whatever the caller's shell has."""
    for name in SDK_VARIABLES_CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime_dir))
    monkeypatch.setenv("TMPDIR", tempfile.gettempdir())


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
